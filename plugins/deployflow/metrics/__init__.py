"""Live metrics outside the runtime: a Prometheus server beside it, and reading what it counts."""
