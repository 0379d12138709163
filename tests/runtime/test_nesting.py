"""The router's nesting scan, against Python's own parser on the same bodies."""

from __future__ import annotations

import json

import pytest

from deployflow.runtime.serving.nesting import depth_past, is_json_media_type


def parsed_depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(parsed_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(parsed_depth, value), default=0)
    return 0


@pytest.mark.parametrize(
    "value",
    [
        {"data": [[1.0] * 10] * 50},
        [[[[[[]]]]], {"a": [{"b": {}}]}] * 40,
        {"text": 'a "quoted" [[[ and \\" escaped ]]] {{{', "data": [[["x"]]] * 30},
        {"keys [[": {"{{": [["]]", "\\\\"]]}},
    ],
)
def test_the_scan_finds_the_depth_the_parser_sees(value: object) -> None:
    body = json.dumps(value).encode()
    depth = parsed_depth(value)

    assert depth_past(body, depth - 1) == depth
    assert depth_past(body, depth) is None


def test_a_body_with_fewer_brackets_than_the_limit_is_not_scanned_and_passes() -> None:
    assert depth_past(b"[" * 512, 512) is None
    assert depth_past(b"[" * 513, 512) == 513
    assert depth_past(b"[" * 100_000 + b"]" * 100_000, 1000) == 100_000


def test_brackets_inside_strings_do_not_nest() -> None:
    body = json.dumps({"data": ["[" * 10_000, "{" * 10_000]}).encode()
    assert depth_past(body, 2) is None


@pytest.mark.parametrize(
    ("content_type", "scanned"),
    [(None, True), (b"", True), (b"application/json", True), (b"Application/JSON; charset=utf-8", True),
     (b"application/vnd.api+json", True), (b"text/plain", False), (b"image/png", False),
     (b"application/octet-stream", False)],
)  # fmt: skip
def test_bodies_declared_json_or_undeclared_are_scanned(content_type: bytes | None, scanned: bool) -> None:
    assert is_json_media_type(content_type) is scanned
