"""Facts of the Azure ML contract that both backends and the local runtime share.

One source for names, headers, limits and status words, so that a name the local runtime
accepts is one Azure ML accepts, and a state one side reports is one the other understands.
Standard library only: the runtime service, which must not import Airflow, imports it too.
"""

from __future__ import annotations

# The request header that pins a scoring request to one deployment; the answer carries it back.
DEPLOYMENT_HEADER = "azureml-model-deployment"

# Naming rules: endpoints and deployments 3-32 letters, digits or '-', starting with a letter and
# not ending with '-' (Azure ML checks both alike); jobs up to 255 letters, digits, '-' or '_'.
ENDPOINT_NAME_PATTERN = r"^[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$"
DEPLOYMENT_NAME_PATTERN = ENDPOINT_NAME_PATTERN
JOB_NAME_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,254}$"

# At most this share of an endpoint's requests can be mirrored, to one deployment.
MAX_MIRROR_PERCENT = 50

# Provisioning states of endpoints and deployments.
CREATING, UPDATING, DELETING = "Creating", "Updating", "Deleting"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
CANCELED = "Canceled"
TERMINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELED})
FAILURE_STATES = frozenset({FAILED, CANCELED})

# Job statuses (the local runtime's batch jobs go through this subset of Azure ML's).
JOB_NOT_STARTED, JOB_QUEUED, JOB_RUNNING = "NotStarted", "Queued", "Running"
JOB_COMPLETED = "Completed"
JOB_FAILED = "Failed"
JOB_CANCELED = "Canceled"
JOB_TERMINAL_STATES = frozenset({JOB_COMPLETED, JOB_FAILED, JOB_CANCELED})
