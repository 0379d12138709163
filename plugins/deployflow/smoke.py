"""Input/output smoke tests: does a deployment answer the sample request with the sample response?

The comparison walks both JSON documents together, so a mismatch is reported at its path
(``$[2]`` or ``$.predictions[0]``) with both values, and numbers match within a tolerance.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deployflow.platform.base import MLPlatform
    from deployflow.platform.specs import InvokeResult

DEFAULT_REL_TOL = 1e-6
DEFAULT_ABS_TOL = 1e-9


def compare_responses(
    expected: Any,
    actual: Any,
    *,
    rel_tol: float = DEFAULT_REL_TOL,
    abs_tol: float = DEFAULT_ABS_TOL,
    path: str = "$",
) -> list[str]:
    """Every place where ``actual`` differs from ``expected``, as "path: expected X, got Y" lines."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return [] if expected is actual else [f"{path}: expected {expected!r}, got {actual!r}"]
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        if math.isclose(expected, actual, rel_tol=rel_tol, abs_tol=abs_tol):
            return []
        return [f"{path}: expected {expected!r}, got {actual!r} (rel_tol={rel_tol:g}, abs_tol={abs_tol:g})"]
    if isinstance(expected, dict) and isinstance(actual, dict):
        problems = [f"{path}: missing key {key!r}" for key in expected if key not in actual]
        problems += [f"{path}: unexpected key {key!r}" for key in actual if key not in expected]
        for key in expected.keys() & actual.keys():
            problems += compare_responses(
                expected[key], actual[key], rel_tol=rel_tol, abs_tol=abs_tol, path=f"{path}.{key}"
            )
        return problems
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{path}: expected {len(expected)} items, got {len(actual)}"]
        problems = []
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            problems += compare_responses(e, a, rel_tol=rel_tol, abs_tol=abs_tol, path=f"{path}[{i}]")
        return problems
    return [] if expected == actual else [f"{path}: expected {expected!r}, got {actual!r}"]


def smoke_test_deployment(
    platform: MLPlatform,
    endpoint: str,
    deployment: str,
    request: Any,
    expected: Any,
    *,
    rel_tol: float = DEFAULT_REL_TOL,
    abs_tol: float = DEFAULT_ABS_TOL,
    check_malformed_input: bool = True,
    timeout_s: float = 60,
) -> tuple[InvokeResult, list[str]]:
    """Send ``request`` pinned to ``deployment``; the answer and every way it fell short of ``expected``.

    With ``check_malformed_input`` a body that is not JSON must get a 4xx, not a crash.
    """
    result = platform.invoke(endpoint, request, deployment=deployment, timeout_s=timeout_s)
    problems = []
    if result.status_code != 200:
        problems.append(f"HTTP {result.status_code}: {str(result.body)[:500]}")
    elif result.deployment not in (None, deployment):
        problems.append(f"answered by deployment {result.deployment}, not {deployment}")
    else:
        problems += compare_responses(expected, result.body, rel_tol=rel_tol, abs_tol=abs_tol)
    if check_malformed_input:
        bad = platform.invoke(endpoint, b"{not json", deployment=deployment, timeout_s=timeout_s)
        if not 400 <= bad.status_code < 500:
            problems.append(f"a malformed request got HTTP {bad.status_code}, not a 4xx: {str(bad.body)[:300]}")
    return result, problems
