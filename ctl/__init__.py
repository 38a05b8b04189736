"""zorrent's command-line tool: sends requests to the tracker and the peers."""
