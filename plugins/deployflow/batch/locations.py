"""Blob folders as the URIs each platform's batch job reads and writes.

The local runtime reads ``blob://<container>/<prefix>`` with a connection string handed over
with the job; Azure ML mounts ``wasbs://`` inputs itself and writes outputs to a datastore
(``azureml://datastores/<name>/paths/<prefix>``), so the output folder needs a datastore name.
"""

from __future__ import annotations

LOCAL = "local"
AZURE_ML = "azureml"


class LocationError(ValueError):
    """A folder cannot be expressed for that platform; the message says what to configure."""


def input_uri(platform_kind: str, container: str, prefix: str, *, account_name: str | None = None) -> str:
    """The URI of a folder of blobs to score, for the platform named by ``platform_kind``."""
    if platform_kind == AZURE_ML:
        if not account_name:
            raise LocationError("Azure ML reads wasbs:// URIs: the storage connection must name its account")
        return f"wasbs://{container}@{account_name}.blob.core.windows.net/{prefix.strip('/')}"
    return f"blob://{container}/{prefix.strip('/')}"


def output_uri(platform_kind: str, container: str, prefix: str, *, datastore: str | None = None) -> str:
    """The URI a job writes predictions.csv (and, locally, summary.json) under."""
    if platform_kind == AZURE_ML:
        if not datastore:
            raise LocationError(
                f"Azure ML writes batch outputs to a datastore: set output.datastore to the datastore that "
                f"points at container {container}"
            )
        return f"azureml://datastores/{datastore}/paths/{prefix.strip('/')}"
    return f"blob://{container}/{prefix.strip('/')}"
