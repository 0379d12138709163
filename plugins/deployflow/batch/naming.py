"""Names the batch flow derives from a run: staging and output prefixes, the job name.

Airflow run ids hold ':' and '+' (``scheduled__2026-11-01T06:00:00+00:00``), which job names
refuse and blob URLs must escape; every derived name uses the run key instead. The run key is an
escape of the run id, not a lossy clean-up, so two run ids (``a:b``, ``a-b``) never share outputs.
"""

from __future__ import annotations

import hashlib
import re

from deployflow.batch.config import join_blob_path

STAGING_FOLDER = "_staging"
MAX_JOB_NAME = 255
_ESCAPED = re.compile(r"[^A-Za-z0-9-]")


def run_key(run_id: str) -> str:
    """The run id with letters, digits and '-' kept, and every other character (``_`` too) written as
    ``_`` and its UTF-8 bytes in hex: ``a:b`` is ``a_3ab``, ``a-b`` stays ``a-b``, ``a_b`` is ``a_5fb``."""
    if not run_id:
        raise ValueError("an empty run id has nothing to name its files after")
    return _ESCAPED.sub(lambda m: "".join(f"_{byte:02x}" for byte in m.group().encode()), run_id)


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
