"""The Azure Machine Learning backend of the platform contract (azure-ai-ml v2)."""

from deployflow.azureml.aks import AttachReport, attach_shared_aks, render_instance_types
from deployflow.azureml.backend import AzureMLPlatform
from deployflow.azureml.calls import RetryPolicy

__all__ = ["AttachReport", "AzureMLPlatform", "RetryPolicy", "attach_shared_aks", "render_instance_types"]
