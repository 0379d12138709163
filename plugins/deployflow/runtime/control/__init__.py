"""The control plane: the REST API and the service behind it (models, endpoints, deployments)."""
