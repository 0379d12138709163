"""Client side of the local runtime: what the local backend and the tooling talk through."""
