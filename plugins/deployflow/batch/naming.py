"""Names the batch flow derives from a run: staging and output prefixes, the job name.

Airflow run ids hold ':' and '+' (``scheduled__2026-11-01T06:00:00+00:00``), which job names
refuse and blob URLs must escape; every derived name uses the run key instead.
"""

from __future__ import annotations

import hashlib
import re

from deployflow.batch.config import join_blob_path

STAGING_FOLDER = "_staging"
MAX_JOB_NAME = 255
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def run_key(run_id: str) -> str:
    """The run id with every run of characters other than letters, digits, '_' and '-' turned into one '-'."""
    key = _UNSAFE.sub("-", run_id).strip("-")
    if not key:
        raise ValueError(f"run id {run_id!r} has no letter or digit to name its files after")
    return key


def staging_prefix(run_id: str) -> str:
    """``_staging/<run key>``, at the top of the input container: the run's own copy of its new blobs."""
    return join_blob_path(STAGING_FOLDER, run_key(run_id))


def is_staged(blob_name: str) -> bool:
    """Whether a blob is a staged copy (never an input of its own, even when the input prefix is '')."""
    return blob_name.startswith(f"{STAGING_FOLDER}/")


def output_prefix(base: str, run_id: str) -> str:
    """Where one run's predictions.csv and summary.json go: ``<output prefix>/<run key>``."""
    return join_blob_path(base, run_key(run_id))


def relative_name(blob_name: str, input_prefix: str) -> str:
    """An input blob's path below the input prefix: its name in the staged folder, and in the job's input."""
    return blob_name[len(input_prefix) :].lstrip("/") if input_prefix else blob_name


def staged_name(blob_name: str, input_prefix: str, staging: str) -> str:
    """The staged copy of an input blob: its path below the input prefix, under the staging prefix."""
    return join_blob_path(staging, relative_name(blob_name, input_prefix))


def job_name(dag_id: str, run_id: str) -> str:
    """``<dag id>-<run key>``, shortened with a hash when longer than a job name may be."""
    name = f"{dag_id}-{run_key(run_id)}"
    if len(name) <= MAX_JOB_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{name[: MAX_JOB_NAME - 13]}-{digest}"
