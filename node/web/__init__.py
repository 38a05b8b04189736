"""The read-only web view of the swarm: a poller, a model, Prometheus metrics, an HTTP server."""
