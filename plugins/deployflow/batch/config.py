"""A batch use case, read from ``include/batch/<name>.json``: what to score, where, and how often.

One file gives one DAG. Every problem in a file is reported at once, each naming the file and
the field, so a broken config fails the DAG file's import with a message that says what to fix.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from deployflow.packages import ModelPackage
from deployflow.platform.batch import JOB_NAME
from deployflow.platform.specs import ModelRef

# The project (the folder with dags/ and include/) holds the use cases; its package paths are relative
# to it. The DAG file passes its own project folder; elsewhere DEPLOYFLOW_PROJECT_DIR, else the cwd.
REPO_ROOT = Path(os.environ.get("DEPLOYFLOW_PROJECT_DIR") or Path.cwd()).resolve()
CONFIG_DIR = REPO_ROOT / "include" / "batch"
DAG_ID = re.compile(r"^[a-zA-Z0-9_.-]{1,200}$")
# Azure's container rule: 3-63 lower-case letters, digits and single hyphens, starting and ending alphanumeric.
MANIFEST_NAME = "_manifest.json"
CONTAINER = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$")


class ConfigError(ValueError):
    """A use-case file that cannot be used; the message lists every problem as ``file: field: what``."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class BlobFolder(_Strict):
    """A container and a prefix (a virtual folder, no leading or trailing '/'); '' is the whole container."""

    container: str
    prefix: str = ""
    #: Azure ML only: the datastore that points at ``container`` (jobs write to azureml:// URIs)
    datastore: str | None = None

    @field_validator("container")
    @classmethod
    def _container(cls, value: str) -> str:
        if not CONTAINER.match(value):
            raise ValueError("must be 3-63 lower-case letters, digits or single hyphens (Azure's container rule)")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip("/")
        if value.startswith("_staging") or "//" in value:
            raise ValueError("must not start with _staging (the flow's own folder) or hold '//'")
        return value


class DataFactory(_Strict):
    """An Azure Data Factory pipeline run before scoring (through the Azure provider's operator)."""

    conn_id: str = Field(min_length=1)
    resource_group: str = Field(min_length=1)
    factory: str = Field(min_length=1)
    pipeline: str = Field(min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)


class BatchUseCase(_Strict):
    """One batch-scoring use case; ``package_path`` is absolute once loaded (relative paths are from the repo)."""

    dag_id: str
    description: str = Field(min_length=1)
    schedule: str | None
    watch: bool = False
    watch_poll_interval_s: int = Field(default=60, ge=5)
    #: how long a run waits, deferred, for the input prefix to hold any blob before it is skipped
    wait_for_blobs_timeout_s: int = Field(default=3600, ge=1)
    ml_platform_conn_id: str = Field(min_length=1)
    storage_conn_id: str = Field(min_length=1)
    model: str
    register_model: bool = False
    package_path: str
    #: the package's batch script; None for an MLflow model folder (deployflow's MLflow batch script scores it)
    scoring_script: str | None = Field(default=None, min_length=1)
    input: BlobFolder
    output: BlobFolder
    mini_batch_size: int = Field(default=10, ge=1)
    error_threshold: int = Field(default=-1, ge=-1)
    max_retries: int = Field(default=3, ge=0)
    timeout_s: int = Field(default=60, ge=1)
    job_timeout_s: int = Field(default=6 * 3600, ge=60)
    instance_count: int = Field(default=1, ge=1)
    max_concurrency_per_instance: int = Field(default=1, ge=1)
    compute: str | None = None
    data_factory: DataFactory | None = None
    tags: list[str] = Field(default_factory=list)

    @field_validator("dag_id")
    @classmethod
    def _dag_id(cls, value: str) -> str:
        if not DAG_ID.match(value) or not JOB_NAME.match(value):
            raise ValueError("must be letters, digits, '_' or '-', starting with a letter or digit (at most 200)")
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is not None and not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (e.g. '0 6 * * *'); null for no schedule")
        return value

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        try:
            ModelRef.parse(value)
        except ValueError:
            raise ValueError(
                f"{value!r} has no version: write name:version (a batch job scores with a pinned model, never "
                "'latest'), and set register_model to register that version from package_path"
            ) from None
        return value

    @model_validator(mode="after")
    def _starts_somehow(self) -> BatchUseCase:
        if self.schedule is None and not self.watch:
            raise ValueError("schedule is null and watch is false: the DAG would never run; set one of them")
        if self.input.container == self.output.container and _overlaps(self.input.prefix, self.output.prefix):
            raise ValueError("input.prefix and output.prefix overlap in one container: outputs would be scored")
        return self

    @property
    def model_ref(self) -> ModelRef:
        return ModelRef.parse(self.model)

    @property
    def manifest_blob(self) -> str:
        """Where the names and etags of the scored blobs are kept, next to the outputs."""
        return join_blob_path(self.output.prefix, MANIFEST_NAME)


def join_blob_path(*parts: str) -> str:
    """Blob path segments joined with '/', empty segments dropped."""
    return "/".join(part.strip("/") for part in parts if part.strip("/"))


def _overlaps(a: str, b: str) -> bool:
    a, b = f"{a}/" if a else "", f"{b}/" if b else ""
    return a.startswith(b) or b.startswith(a)


def load_use_case(path: Path, *, repo_root: Path = REPO_ROOT) -> BatchUseCase:
    """Read and check one use-case file; raise ConfigError naming the file and every bad field."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not readable as JSON: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must hold a JSON object, got {type(raw).__name__}")
    raw = {k: v for k, v in raw.items() if not k.startswith("_")}  # "_comment" keys are notes
    try:
        use_case = BatchUseCase.model_validate(raw)
    except ValidationError as e:
        problems = [f"{path}: {'.'.join(str(p) for p in err['loc']) or '(file)'}: {err['msg']}" for err in e.errors()]
        raise ConfigError("\n".join(problems)) from None
    package = Path(use_case.package_path)
    package = package if package.is_absolute() else (repo_root / package).resolve()
    if use_case.scoring_script is not None and not (package / use_case.scoring_script).is_file():
        raise ConfigError(f"{path}: scoring_script: {package / use_case.scoring_script} does not exist")
    if use_case.scoring_script is None and not ModelPackage(package).is_mlflow:
        raise ConfigError(
            f"{path}: scoring_script: missing, and {package} is not an MLflow model folder (MLmodel, no score.py); "
            "name the package's batch script (init() and run(mini_batch))"
        )
    return use_case.model_copy(update={"package_path": str(package)})


def load_use_cases(folder: Path = CONFIG_DIR, *, repo_root: Path = REPO_ROOT) -> list[BatchUseCase]:
    """Every ``*.json`` in the folder, sorted by file name; dag_ids must be unique."""
    cases = [load_use_case(path, repo_root=repo_root) for path in sorted(folder.glob("*.json"))]
    seen: set[str] = set()
    for case in cases:
        if case.dag_id in seen:
            raise ConfigError(f"{folder}: two use cases have dag_id {case.dag_id!r}; dag_ids must be unique")
        seen.add(case.dag_id)
    return cases
