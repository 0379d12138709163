"""LocalPlatform's batch calls against a real runtime: the contract's types in and out, errors mapped."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployflow.local.backend import LocalPlatform
from deployflow.platform.batch import BatchInput, BatchJobSpec, BatchJobState
from deployflow.platform.errors import PlatformError, PlatformNotFoundError
from deployflow.platform.specs import ModelRef
from tests.runtime.batch_support import HANGING_SCRIPT, SAMPLE_DATA, scoring_package, worker_processes
from tests.runtime.support import SAMPLE_MODEL, RuntimeProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    runtime = RuntimeProcess(tmp_path_factory.mktemp("runtime") / "data")
    runtime.start()
    token = (runtime.data_dir / "admin-token").read_text().strip()
    local = LocalPlatform(runtime.control_url, token)
    try:
        local.register_model("diabetes", str(SAMPLE_MODEL), version="1")
        yield local
    finally:
        local.close()
        runtime.stop()


def spec(name: str, input_uri: str, output_uri: str, **settings: object) -> BatchJobSpec:
    settings.setdefault("package_path", str(SAMPLE_MODEL))
    settings.setdefault("scoring_script", "batch_score.py")
    return BatchJobSpec(name=name, model=ModelRef("diabetes", "1"), input=BatchInput(input_uri),
                        output_uri=output_uri, **settings)  # type: ignore[arg-type]  # fmt: skip


def wait(platform: LocalPlatform, job_id: str, timeout_s: float = 120) -> BatchJobState:
    deadline = time.monotonic() + timeout_s
    while not (state := platform.get_batch_job(job_id)).done:
        assert time.monotonic() < deadline, f"job {job_id} still {state.status}"
        time.sleep(0.1)
    return state


def test_submit_and_get_map_to_the_contract(platform: LocalPlatform, tmp_path: Path) -> None:
    submitted = platform.submit_batch_job(spec("contract", str(SAMPLE_DATA), str(tmp_path / "out"), mini_batch_size=1))

    state = wait(platform, submitted.job_id)

    assert submitted.job_id.startswith("contract-") and not submitted.done
    assert state.succeeded and state.output_uri == str(tmp_path / "out") and state.error is None
    assert state.summary == {"items": 3, "succeeded": 3, "failed": 0, "mini_batches": 3, "retries": 0, "rows": 60}
    assert platform.cancel_batch_job(state.job_id).status == "Completed"  # a finished job stays as it is


def test_cancel_returns_the_canceled_state(platform: LocalPlatform, tmp_path: Path) -> None:
    package = scoring_package(tmp_path / "pkg", HANGING_SCRIPT)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "hang.csv").write_text("x\n")
    submitted = platform.submit_batch_job(
        spec("cancel", str(tmp_path / "in"), str(tmp_path / "out"), package_path=str(package),
             scoring_script="score_batch.py")
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while platform.get_batch_job(submitted.job_id).status != "Running":
        assert time.monotonic() < deadline
        time.sleep(0.05)

    state = platform.cancel_batch_job(submitted.job_id)

    assert state.done and state.status == "Canceled" and not state.succeeded
    assert worker_processes(submitted.job_id) == []


def test_errors_are_platform_errors(platform: LocalPlatform, tmp_path: Path) -> None:
    with pytest.raises(PlatformNotFoundError, match="no batch job with id nope"):
        platform.get_batch_job("nope")
    with pytest.raises(PlatformError, match="does not exist") as refused:
        platform.submit_batch_job(spec("missing", str(tmp_path / "nowhere"), str(tmp_path / "out")))
    assert refused.value.status_code == 422
    unregistered = BatchJobSpec(name="x", model=ModelRef("diabetes", "9"), package_path=str(SAMPLE_MODEL),
                                scoring_script="batch_score.py", input=BatchInput(str(SAMPLE_DATA)),
                                output_uri=str(tmp_path / "out"))  # fmt: skip
    with pytest.raises(PlatformError, match="no version 9"):
        platform.submit_batch_job(unregistered)
