"""Resource enforcement: cgroups where the machine allows them, else affinity and an rlimit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from deployflow.runtime.environments import environment_key
from deployflow.runtime.serving.resources import RLIMIT_AS_FLOOR_BYTES, Enforcement, ResourceController, ResourceLimits

CHILD_REPORT = (
    "import json, os, resource; "
    "print(json.dumps({'cpus': sorted(os.sched_getaffinity(0)), "
    "'as': resource.getrlimit(resource.RLIMIT_AS)[0]}))"
)


def run_placed(limits: ResourceLimits, controller: ResourceController) -> dict:
    placement = controller.place("probe-replica", limits)
    try:
        out = subprocess.run(
            [sys.executable, "-c", CHILD_REPORT], preexec_fn=placement.apply_in_child,
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
    finally:
        placement.release()
    return {"enforcement": placement.enforcement, **json.loads(out)}


def test_without_cgroups_a_replica_gets_cores_and_an_address_space_cap() -> None:
    controller = ResourceController("deployflow-test", prefer=Enforcement.AFFINITY_RLIMIT)
    assert controller.enforcement is Enforcement.AFFINITY_RLIMIT
    child = run_placed(ResourceLimits(cpu=0.5, memory_mb=2048), controller)
    assert child["enforcement"] is Enforcement.AFFINITY_RLIMIT
    assert len(child["cpus"]) == 1  # half a core still needs one whole core to run on
    assert child["as"] == 2048 * 1024 * 1024


def test_a_small_memory_limit_is_raised_to_the_floor_python_needs() -> None:
    controller = ResourceController("deployflow-test", prefer=Enforcement.AFFINITY_RLIMIT)
    child = run_placed(ResourceLimits(cpu=None, memory_mb=64), controller)
    assert child["as"] == RLIMIT_AS_FLOOR_BYTES
    assert len(child["cpus"]) == len(os.sched_getaffinity(0))  # no cpu limit, no pinning


def test_the_strongest_available_enforcement_is_chosen_and_reported() -> None:
    controller = ResourceController("deployflow-test-detect")
    try:
        assert controller.enforcement in set(Enforcement) - {Enforcement.NONE}
        child = run_placed(ResourceLimits(cpu=1.0, memory_mb=512), controller)
        assert child["enforcement"] is controller.enforcement
    finally:
        controller.close()


def test_environment_key_ignores_order_and_comments_but_not_versions() -> None:
    a = environment_key("numpy==2.4.6\n# comment\nscikit-learn==1.9.1\n")
    assert a == environment_key("scikit-learn==1.9.1\nnumpy==2.4.6\n")
    assert a != environment_key("scikit-learn==1.9.0\nnumpy==2.4.6\n")
