"""The batch-scoring part of the contract: a scoring job over many files, on a compute cluster.

Azure ML runs it as a pipeline job with ``parallel_run_function`` on an ``AmlCompute``
cluster; the local runtime runs it on a pool of worker processes. Both take the same spec:
a scoring script in Azure ML's batch contract (``init()``, ``run(mini_batch)`` returning
rows), files from a folder or a blob prefix, ``append_row`` output into ``predictions.csv``
and a per-job summary. An MLflow model folder needs no script: with ``scoring_script`` left
empty, both run deployflow's own (``runtime/child/mlflow_batch.py``), as Azure ML's MLflow batch
deployments do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

from deployflow.platform.contract import JOB_COMPLETED, JOB_NAME_PATTERN, JOB_TERMINAL_STATES
from deployflow.platform.specs import ModelRef, _Spec

JOB_NAME = re.compile(JOB_NAME_PATTERN)
PREDICTIONS_FILE = "predictions.csv"
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class BatchInput(_Spec):
    """Where the files to score are.

    ``uri`` is a local folder (``/data/in`` or ``file:///data/in``), a blob prefix
    (``wasbs://<container>@<account>.blob.core.windows.net/<prefix>`` or, for Azurite and
    the local runtime, ``blob://<container>/<prefix>`` read with ``storage_conn_id``), or an
    Azure ML data URI (``azureml://datastores/<name>/paths/<prefix>``). ``files`` limits the job
    to those names under the prefix (how the batch DAG scores only new blobs).
    """

    uri: str
    files: tuple[str, ...] = ()
    storage_conn_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", tuple(self.files))  # a list after a JSON round trip


@dataclass(frozen=True)
class BatchJobSpec(_Spec):
    """One batch-scoring job.

    ``error_threshold`` is the number of failed items tolerated before the job fails (-1:
    any number, as in Azure ML); each mini-batch is retried ``max_retries`` times and may take
    ``timeout_s`` seconds per attempt. ``scoring_script`` is None (or empty) only for an MLflow
    model package, scored by the platform's MLflow batch script.
    """

    name: str
    model: ModelRef
    package_path: str
    scoring_script: str | None
    input: BatchInput
    output_uri: str
    mini_batch_size: int = 10
    error_threshold: int = -1
    max_retries: int = 3
    timeout_s: int = 60
    instance_count: int = 1
    max_concurrency_per_instance: int = 1
    compute: str | None = None
    environment_variables: dict[str, str] = field(default_factory=dict)

    _nested: ClassVar[dict[str, type[_Spec]]] = {"model": ModelRef, "input": BatchInput}

    def __post_init__(self) -> None:
        object.__setattr__(self, "scoring_script", self.scoring_script or None)
        if not JOB_NAME.match(self.name):
            raise ValueError(f"batch job name {self.name!r} must be letters, digits, '-' or '_' (at most 255)")
        if self.mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be at least 1, got {self.mini_batch_size}")
        if self.error_threshold < -1:
            raise ValueError(f"error_threshold must be -1 (no limit) or a count, got {self.error_threshold}")
        if self.max_retries < 0 or self.timeout_s < 1:
            raise ValueError("max_retries must be 0 or more and timeout_s at least 1")
        if self.instance_count < 1 or self.max_concurrency_per_instance < 1:
            raise ValueError("instance_count and max_concurrency_per_instance must be at least 1")


@dataclass(frozen=True)
class BatchJobState(_Spec):
    """A submitted job: ``summary`` holds items, succeeded, failed, mini_batches once known.

    ``failed_files`` names the input files (relative to the job's input) that kept failing but
    were tolerated under ``error_threshold``, and ``file_errors`` why; ``skipped_files`` those left
    unscored (empty) and why. Both backends report them: the local runtime from its workers, Azure
    ML from the reports deployflow's entry script leaves in the job's output (``azureml.parallel_entry``).
    ``retryable`` is False for a failure that running the job again cannot fix (its data or its code).
    """

    job_id: str
    status: str
    output_uri: str
    error: str | None = None
    summary: dict[str, int] = field(default_factory=dict)
    failed_files: tuple[str, ...] = ()
    file_errors: dict[str, str] = field(default_factory=dict)
    skipped_files: dict[str, str] = field(default_factory=dict)
    retryable: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "failed_files", tuple(self.failed_files))  # a list after a JSON round trip

    @property
    def done(self) -> bool:
        return self.status in JOB_TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        return self.status == JOB_COMPLETED
