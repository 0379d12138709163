"""Input/output smoke tests of a deployment behind its endpoint: the named checks, pinned by the header.

The samples go to the endpoint's scoring URI with ``azureml-model-deployment`` naming the
deployment under test, as a client would send them; :mod:`deployflow.checks` judges the
answers. A failure that a retry can mend (no answer in time, a 502/503/504 from the
platform's front door) is told apart from one it cannot (a wrong answer).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from deployflow.checks import Answer, CheckReport, Sample, Severity, run_checks
from deployflow.platform.errors import PlatformError

if TYPE_CHECKING:
    from deployflow.platform.base import MLPlatform


def endpoint_sender(
    platform: MLPlatform, endpoint: str, deployment: str, timeout_s: float
) -> Callable[[bytes], Answer]:
    """Send one body to the endpoint pinned to ``deployment``; no answer at all counts as a timeout."""

    def send(body: bytes) -> Answer:
        started = time.perf_counter()
        try:
            result = platform.invoke(endpoint, body, deployment=deployment, timeout_s=timeout_s)
        except PlatformError as e:
            if e.status_code is not None:  # the platform refused (no such endpoint, ...): not an answer to judge
                raise
            return Answer(0, str(e), False, (time.perf_counter() - started) * 1000, timed_out=True)
        return Answer(result.status_code, result.body, result.is_json, result.elapsed_ms, deployment=result.deployment)

    return send


def smoke_test_deployment(
    platform: MLPlatform,
    endpoint: str,
    deployment: str,
    samples: list[Sample],
    *,
    rel_tol: float,
    abs_tol: float,
    severities: Mapping[str, Severity] | None = None,
    timeout_s: float = 60,
) -> CheckReport:
    """Replay every sample (and a malformed request) through the endpoint to one deployment."""
    send = endpoint_sender(platform, endpoint, deployment, timeout_s)
    return run_checks(
        send, samples, severities=severities, rel_tol=rel_tol, abs_tol=abs_tol, timeout_s=timeout_s,
        deployment=deployment,
    )  # fmt: skip
