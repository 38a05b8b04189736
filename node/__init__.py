"""Long-running processes: the tracker and the peers."""
