"""The `deployflow` command: look at and call endpoints on any ML platform connection, and run the demo."""
