"""What commands show, apart from their Typer definitions (ctl/commands/)."""
