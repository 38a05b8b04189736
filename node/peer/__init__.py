"""A peer: serves verified pieces, downloads from many peers at once."""
