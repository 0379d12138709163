"""The Azure ML contract's facts have one source, and that source is safe for the runtime to import."""

from __future__ import annotations

import json
import subprocess
import sys

from deployflow.platform import contract
from deployflow.platform.batch import BatchJobState
from deployflow.platform.specs import DeploymentState
from deployflow.runtime import schemas
from deployflow.runtime.serving import router

OUTSIDE_STDLIB = """
import json, sys
before = set(sys.modules)
import deployflow.platform.contract
tops = {name.partition(".")[0] for name in set(sys.modules) - before}
print(json.dumps(sorted(tops - set(sys.stdlib_module_names) - {"deployflow"})))
"""


def test_the_contract_imports_nothing_outside_the_standard_library() -> None:
    # a fresh interpreter: this one has Airflow and pydantic loaded already
    done = subprocess.run([sys.executable, "-c", OUTSIDE_STDLIB], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []


def test_the_runtime_takes_names_limits_and_header_from_the_contract() -> None:
    assert router.DEPLOYMENT_HEADER == contract.DEPLOYMENT_HEADER.encode()
    assert schemas.ENDPOINT_NAME_PATTERN == contract.ENDPOINT_NAME_PATTERN
    assert schemas.DEPLOYMENT_NAME_PATTERN == contract.DEPLOYMENT_NAME_PATTERN
    assert schemas.JOB_NAME_PATTERN == contract.JOB_NAME_PATTERN
    assert schemas.MAX_MIRROR_PERCENT == contract.MAX_MIRROR_PERCENT
    assert {s.value for s in schemas.JobStatus} >= contract.JOB_TERMINAL_STATES


def test_canceled_ends_a_deployment_or_job_wait_as_a_failure() -> None:
    canceled = DeploymentState("e", "d", contract.CANCELED)
    assert canceled.done and canceled.failed
    job = BatchJobState("j", contract.JOB_CANCELED, "out")
    assert job.done and not job.succeeded
