"""Warm worker templates: workers of later jobs fork from a template that has imported their libraries.

A real runtime, real templates and workers in the sample model's environment. What is checked is
what a user would notice: workers of the second job come from the same warm template, which holds
scikit-learn after the first job; every job still gets fresh script state and its own random
numbers; a changed script is seen; a template that would fork with threads is given up for fresh
processes; idle templates stop; nothing outlives the runtime.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest

from deployflow.local.client import LocalRuntimeClient
from deployflow.runtime.jobs.templates import MAX_TEMPLATES, ForkedProcess, WorkerTemplates
from tests.runtime.batch_support import (
    SAMPLE_DATA,
    SLOW_SCRIPT,
    job_document,
    scoring_package,
    template_processes,
    worker_processes,
)
from tests.runtime.support import SAMPLE_MODEL, RuntimeProcess, sample_runtime

pytestmark = pytest.mark.slow
T = TypeVar("T")

# One row per file: its name, how many run() calls this process has made, its pid, and a random number.
# numpy.random is imported up front (as scikit-learn does), so the template holds its global state.
STATEFUL_SCRIPT = """
import os

import numpy as np
import numpy.random

CALLS = 0


def init():
    pass


def run(mini_batch):
    global CALLS
    CALLS += 1
    return [[os.path.basename(p), CALLS, os.getpid(), int(np.random.randint(1 << 30))] for p in mini_batch]
"""


def until(condition: Callable[[], object], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.fixture(scope="module", autouse=True)
def model(client: LocalRuntimeClient) -> dict:
    return client.register_model("diabetes", SAMPLE_MODEL, version="1")


def run_job(client: LocalRuntimeClient, name: str, input_uri: str, output: Path, **settings: object) -> dict:
    job = client.submit_job(job_document(name, input_uri, str(output), **settings))
    job = client.wait_for_job(job["id"], timeout_s=120, poll_s=0.05)
    assert job["status"] == "Completed", job["error"]
    return job


def holds_module(pid: int, folder: str) -> bool:
    """Whether the process has compiled modules from ``folder`` (e.g. ``/sklearn/``) mapped: it imported them."""
    return any(folder in m.path for m in psutil.Process(pid).memory_maps())


def test_a_second_job_forks_from_the_template_that_imported_its_libraries(
    runtime: RuntimeProcess, client: LocalRuntimeClient, tmp_path: Path
) -> None:
    folder = str(SAMPLE_DATA)
    first = run_job(client, "first", folder, tmp_path / "a", mini_batch_size=1, instance_count=2)
    (template,) = template_processes(runtime.data_dir)
    until(lambda: holds_module(template.pid, "/sklearn/"), "the idle template never imported what the workers loaded")

    job = client.submit_job(job_document("second", folder, str(tmp_path / "b"), mini_batch_size=1,
                                              package_path=scoring_package(tmp_path / "slow", SLOW_SCRIPT),
                                              scoring_script="score_batch.py", instance_count=2))  # fmt: skip
    until(lambda: len(worker_processes(job["id"])) == 2, "the second job's workers did not start")
    spied = [p.ppid() for p in worker_processes(job["id"])]
    second = client.wait_for_job(job["id"], timeout_s=60, poll_s=0.05)

    assert second["status"] == "Completed", second["error"]
    assert spied == [template.pid, template.pid]
    assert template_processes(runtime.data_dir) == [template]
    assert first["summary"]["rows"] == 60 and (tmp_path / "a" / "predictions.csv").exists()
    assert worker_processes(first["id"]) == worker_processes(second["id"]) == []


def test_every_job_gets_fresh_script_state_and_its_own_random_numbers(
    runtime: RuntimeProcess, client: LocalRuntimeClient, tmp_path: Path
) -> None:
    package = scoring_package(tmp_path / "pkg", STATEFUL_SCRIPT)
    settings = {"package_path": package, "scoring_script": "score_batch.py", "mini_batch_size": 1}
    run_job(client, "state-warm-up", str(SAMPLE_DATA), tmp_path / "warm-up", **settings)
    (template,) = template_processes(runtime.data_dir)
    until(lambda: holds_module(template.pid, "/numpy/"), "the idle template never imported numpy")
    rows = []
    for name in ("state-a", "state-b"):  # both forked from a template that holds numpy's random state
        run_job(client, name, str(SAMPLE_DATA), tmp_path / name, **settings)
        rows.append([line.split(",") for line in (tmp_path / name / "predictions.csv").read_text().splitlines()])

    for job_rows in rows:  # one worker per job: its run() calls count 1, 2, 3 from a fresh module
        assert [int(calls) for _, calls, _, _ in job_rows] == [1, 2, 3]
    pids = [{pid for _, _, pid, _ in job_rows} for job_rows in rows]
    assert len(pids[0]) == len(pids[1]) == 1 and pids[0] != pids[1]
    randoms = [[int(value) for *_, value in job_rows] for job_rows in rows]
    assert randoms[0] != randoms[1], "two workers forked from one template drew the same random numbers"


def test_a_changed_script_is_what_the_next_job_runs(client: LocalRuntimeClient, tmp_path: Path) -> None:
    version = "def init():\n    pass\n\n\ndef run(mini_batch):\n    return ['{tag}' for _ in mini_batch]\n"
    package = scoring_package(tmp_path / "pkg", version.format(tag="v1"))
    settings = {"package_path": package, "scoring_script": "score_batch.py", "mini_batch_size": 3}
    run_job(client, "script-v1", str(SAMPLE_DATA), tmp_path / "v1", **settings)
    (package / "score_batch.py").write_text(version.format(tag="v2"))

    run_job(client, "script-v2", str(SAMPLE_DATA), tmp_path / "v2", **settings)

    assert (tmp_path / "v1" / "predictions.csv").read_text() == "v1\nv1\nv1\n"
    assert (tmp_path / "v2" / "predictions.csv").read_text() == "v2\nv2\nv2\n"


def test_a_template_that_would_fork_with_threads_gives_way_to_fresh_workers(
    runtime: RuntimeProcess, client: LocalRuntimeClient, tmp_path: Path
) -> None:
    threaded = {"OPENBLAS_NUM_THREADS": "2", "DEPLOYFLOW_TEST_CASE": "threads"}  # numpy starts a BLAS thread
    settings = {"mini_batch_size": 3, "environment_variables": threaded}
    run_job(client, "threads-a", str(SAMPLE_DATA), tmp_path / "a", **settings)
    until(lambda: "cannot fork safely" in runtime.log_path.read_text(), "the template was not given up")

    job = client.submit_job(
        job_document("threads-b", str(SAMPLE_DATA), str(tmp_path / "b"), mini_batch_size=1,
                     package_path=scoring_package(tmp_path / "slow", SLOW_SCRIPT), scoring_script="score_batch.py",
                     environment_variables=threaded)
    )  # fmt: skip
    until(lambda: len(worker_processes(job["id"])) == 1, "the job's worker did not start")
    parent = worker_processes(job["id"])[0].ppid()
    done = client.wait_for_job(job["id"], timeout_s=60, poll_s=0.05)

    assert done["status"] == "Completed", done["error"]
    assert parent == runtime.process.pid  # spawned by the runtime itself, not forked
    assert (tmp_path / "a" / "predictions.csv").read_text().count("\n") == 60


def test_an_idle_template_stops_and_none_is_used_when_turned_off(tmp_path: Path) -> None:
    for idle, expect_template in (("1", True), ("0", False)):
        with sample_runtime(tmp_path / f"idle-{idle}", "--batch-warm-idle-s", idle) as (runtime, client):
            job = client.submit_job(job_document("idle", str(SAMPLE_DATA), str(tmp_path / f"out-{idle}"),
                                                 package_path=scoring_package(tmp_path / "slow", SLOW_SCRIPT),
                                                 scoring_script="score_batch.py"))  # fmt: skip
            until(lambda: len(worker_processes(job["id"])) == 1, "the job's worker did not start")  # noqa: B023
            parent = worker_processes(job["id"])[0].ppid()
            assert client.wait_for_job(job["id"], timeout_s=60, poll_s=0.05)["status"] == "Completed"
            templates = template_processes(runtime.data_dir)

            assert (parent != runtime.process.pid) is expect_template
            assert len(templates) == int(expect_template) and (not templates or parent == templates[0].pid)
            until(lambda: template_processes(runtime.data_dir) == [], "the idle template did not stop")  # noqa: B023


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_templates_and_their_workers_do_not_outlive_the_runtime(tmp_path: Path, stop_signal: signal.Signals) -> None:
    with sample_runtime(tmp_path / "data") as (runtime, client):
        job = client.submit_job(job_document("orphan", str(SAMPLE_DATA), str(tmp_path / "out"), timeout_s=600,
                                             package_path=scoring_package(tmp_path / "slow", SLOW_SCRIPT),
                                             scoring_script="score_batch.py", mini_batch_size=1))  # fmt: skip
        until(lambda: len(worker_processes(job["id"])) == 1, "the job's worker did not start")
        assert len(template_processes(runtime.data_dir)) == 1

        runtime.stop(stop_signal)

        until(lambda: not worker_processes(job["id"]) and not template_processes(runtime.data_dir),
              "a template or a worker outlived the runtime", timeout_s=10)  # fmt: skip


def test_templates_are_capped_and_the_least_recently_used_idle_one_makes_room(tmp_path: Path) -> None:
    with sample_runtime(tmp_path / "data") as (runtime, client):
        for i in range(MAX_TEMPLATES + 1):  # a set of environment variables each: a template each
            run_job(client, f"env-{i}", str(SAMPLE_DATA), tmp_path / f"out-{i}", mini_batch_size=3,
                    environment_variables={"DEPLOYFLOW_TEST_CASE": str(i)})  # fmt: skip

        assert len(template_processes(runtime.data_dir)) == MAX_TEMPLATES
        assert runtime.log_path.read_text().count("the least recently used, to make room") == 1


ForkFrom = Callable[[Path, str], Awaitable[ForkedProcess | None]]


def with_templates(tmp_path: Path, scenario: Callable[[WorkerTemplates, ForkFrom], Awaitable[T]], **options: Any) -> T:
    """Run ``scenario`` with a template registry of its own; ``fork(python, job_id)`` asks it for a worker."""
    script = scoring_package(tmp_path / "pkg", SLOW_SCRIPT) / "score_batch.py"

    async def run() -> T:
        templates = WorkerTemplates(tmp_path / "logs", **{"idle_s": 600, **options})
        with open(os.devnull, "r+b") as null:

            def fork(python: Path, job_id: str) -> Awaitable[ForkedProcess | None]:
                stdio = (null.fileno(),) * 3
                return templates.fork(python, {}, script=script, job_id=job_id, cwd=tmp_path, stdio=stdio)

            try:
                return await scenario(templates, fork)
            finally:
                await templates.close()

    return asyncio.run(run())


def python_wrapper(tmp_path: Path, name: str, before: str = "") -> Path:
    """A "python" that runs ``before`` in the shell and then this interpreter: another template key."""
    wrapper = tmp_path / name
    wrapper.write_text(f'#!/bin/sh\n{before}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def test_a_template_still_starting_is_not_taken_for_an_idle_one(tmp_path: Path) -> None:
    """The sweeper ticks while a second template starts; it must not stop it (it once did, as idle for 600 s)."""
    slow_python = python_wrapper(tmp_path, "slow-python", "sleep 1.5")

    async def scenario(templates: WorkerTemplates, fork: ForkFrom) -> tuple[bool, bool]:
        first = await fork(Path(sys.executable), "a")  # starts the sweeper
        second = await fork(slow_python, "b")
        return first is not None, second is not None

    assert with_templates(tmp_path, scenario) == (True, True)


def test_a_template_asked_to_fork_is_not_evicted_to_make_room(tmp_path: Path) -> None:
    """At the cap, a template whose fork is on its way is in use: the other job starts fresh."""
    other_python = python_wrapper(tmp_path, "other-python")

    async def scenario(templates: WorkerTemplates, fork: ForkFrom) -> tuple[bool, bool]:
        first = await fork(Path(sys.executable), "a")
        assert first is not None
        await first.wait(30)  # its worker has no work and exits: the template is idle again
        (template,) = templates.templates.values()
        assert not template.busy
        again, other = await asyncio.gather(fork(Path(sys.executable), "b"), fork(other_python, "c"))
        return again is not None, other is not None

    assert with_templates(tmp_path, scenario, max_templates=1) == (True, False)
