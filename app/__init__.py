"""Only so that the seed's own generator command works verbatim: see app/tests/create_input_files.py."""
