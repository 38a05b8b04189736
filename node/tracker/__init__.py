"""The tracker: who holds which verified pieces of which torrent."""
