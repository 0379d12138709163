"""Compare a scoring answer with the expected one, number by number within a tolerance.

The comparison walks both JSON documents together, so a mismatch is reported at its path
(``$[2]`` or ``$.predictions[0]``) with both values.
"""

from __future__ import annotations

import math
from typing import Any

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
