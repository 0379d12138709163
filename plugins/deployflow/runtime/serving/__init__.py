"""The data plane: the router, the endpoints it serves, replica processes and their resource limits."""
