"""The smoke-test comparison reports each difference at its path, numbers within a tolerance."""

from __future__ import annotations

from deployflow.compare import compare_responses


def test_equal_within_tolerance() -> None:
    assert compare_responses([1.0, 2.0], [1.0 + 1e-9, 2.0]) == []


def test_number_outside_tolerance_is_named_by_path() -> None:
    problems = compare_responses({"predictions": [1.0, 2.0]}, {"predictions": [1.0, 2.1]})
    assert problems == ["$.predictions[1]: expected 2.0, got 2.1 (rel_tol=1e-06, abs_tol=1e-09)"]


def test_looser_tolerance_accepts_it() -> None:
    assert compare_responses([2.0], [2.1], rel_tol=0.1) == []


def test_length_keys_and_types() -> None:
    assert compare_responses([1, 2, 3], [1, 2]) == ["$: expected 3 items, got 2"]
    assert compare_responses({"a": 1}, {"b": 1}) == ["$: missing key 'a'", "$: unexpected key 'b'"]
    assert compare_responses("yes", ["yes"]) == ["$: expected 'yes', got ['yes']"]
    assert compare_responses(True, 1) == ["$: expected True, got 1"]
