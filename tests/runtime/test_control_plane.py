"""The control plane checks the admin token and the body size before it reads a body (a real runtime)."""

from __future__ import annotations

import json
import socket
import time

import pytest

from deployflow.runtime.config import DEFAULT_CONTROL_MAX_BODY_BYTES
from tests.runtime.support import RuntimeProcess

ANSWER_WITHIN_S = 5.0


def exchange(runtime: RuntimeProcess, head: str, body: bytes = b"", *, chunks: int = 0) -> tuple[int, dict, float]:
    """Send a request head (and ``body``, or ``chunks`` chunks of 64 KiB), read the answer: status, JSON, seconds."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", runtime.control_port), timeout=ANSWER_WITHIN_S) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        try:
            for _ in range(chunks):
                sock.sendall(b"10000\r\n" + b"x" * 0x10000 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the runtime answered and closed before the whole body was sent: what is wanted
        received = b""
        while b"\r\n\r\n" not in received or len(received.split(b"\r\n\r\n", 1)[1]) < _length(received):
            data = sock.recv(65536)
            if not data:
                break
            received += data
    status = int(received.split(b" ", 2)[1])
    return status, json.loads(received.split(b"\r\n\r\n", 1)[1]), time.monotonic() - started


def _length(received: bytes) -> int:
    for line in received.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def token(runtime: RuntimeProcess) -> str:
    return (runtime.data_dir / "admin-token").read_text().strip()


def test_an_unauthenticated_request_is_refused_before_its_body_is_sent(runtime: RuntimeProcess) -> None:
    head = "POST /models HTTP/1.1\nHost: x\nContent-Type: application/json\nContent-Length: 50000000\n"
    status, answer, seconds = exchange(runtime, head)  # the 50 MB never come

    assert status == 401 and answer["error"]["code"] == "Unauthorized"
    assert "Authorization: Bearer" in answer["error"]["message"]
    assert seconds < ANSWER_WITHIN_S


def test_a_wrong_token_is_refused_on_every_route(runtime: RuntimeProcess) -> None:
    for request in ("GET /endpoints", "GET /jobs", "DELETE /endpoints/x", "GET /nowhere"):
        status, answer, _ = exchange(runtime, f"{request} HTTP/1.1\nHost: x\nAuthorization: Bearer {'w' * 43}\n")
        assert (status, answer["error"]["code"]) == (401, "Unauthorized"), request


@pytest.mark.parametrize("path", ["/models", "/jobs", "/endpoints/big", "/endpoints/big/deployments/blue"])
def test_a_declared_oversized_body_is_refused_with_413_before_it_is_read(runtime: RuntimeProcess, path: str) -> None:
    method = "POST" if path in ("/models", "/jobs") else "PUT"
    head = (f"{method} {path} HTTP/1.1\nHost: x\nAuthorization: Bearer {token(runtime)}\n"
            f"Content-Type: application/json\nContent-Length: {DEFAULT_CONTROL_MAX_BODY_BYTES + 1}\n")  # fmt: skip
    status, answer, seconds = exchange(runtime, head)

    assert status == 413 and answer["error"]["code"] == "PayloadTooLarge"
    assert str(DEFAULT_CONTROL_MAX_BODY_BYTES) in answer["error"]["message"]
    assert seconds < ANSWER_WITHIN_S


def test_a_streamed_body_is_cut_off_at_the_cap(runtime: RuntimeProcess) -> None:
    head = (f"POST /jobs HTTP/1.1\nHost: x\nAuthorization: Bearer {token(runtime)}\n"
            "Content-Type: application/json\nTransfer-Encoding: chunked\n")  # fmt: skip
    chunks = DEFAULT_CONTROL_MAX_BODY_BYTES // 0x10000 + 4  # past the cap, and no final chunk
    status, answer, _ = exchange(runtime, head, chunks=chunks)

    assert status == 413 and answer["error"]["code"] == "PayloadTooLarge"


def test_an_authenticated_request_under_the_cap_still_works(runtime: RuntimeProcess) -> None:
    body = json.dumps({"description": "small"}).encode()
    head = (f"PUT /endpoints/small HTTP/1.1\nHost: x\nAuthorization: Bearer {token(runtime)}\n"
            f"Content-Type: application/json\nContent-Length: {len(body)}\n")  # fmt: skip
    status, answer, _ = exchange(runtime, head, body)

    assert status == 200 and answer["name"] == "small" and answer["description"] == "small"
    assert exchange(runtime, "GET /health HTTP/1.1\nHost: x\n")[:2] == (200, {"status": "ok"})


def authenticated(runtime: RuntimeProcess, method: str, path: str, body: bytes) -> tuple[int, dict]:
    head = (f"{method} {path} HTTP/1.1\nHost: x\nAuthorization: Bearer {token(runtime)}\n"
            f"Content-Type: application/json\nContent-Length: {len(body)}\n")  # fmt: skip
    status, answer, _ = exchange(runtime, head, body)
    return status, answer


@pytest.mark.parametrize(
    ("method", "path", "body", "named"),
    [
        ("PUT", "/endpoints/shape/deployments/blue", b'{"model": "m:1", "instance_count": 99, "colour": "red"}',
         ["body.instance_count: Input should be less than or equal to 16", "body.colour: Extra inputs"]),
        ("PUT", "/endpoints/shape/deployments/blue", b'{"instance_count": 1}', ["body.model: Field required"]),
        ("POST", "/endpoints/shape/regenerate-keys", b'{"key_type": "tertiary"}', ["body.key_type"]),
        ("PUT", "/endpoints/-shape", b"{}", ["path.name: String should match pattern"]),
        ("PUT", "/endpoints/shape", b'{"traffic": {"blue": "most"}}', ["body.traffic.blue"]),
        ("POST", "/models", b'{"name": "m", "path": ', ["body is not valid JSON", "at character"]),
    ],
)  # fmt: skip
def test_a_body_that_fails_validation_is_422_in_the_apis_error_shape_naming_the_field(
    runtime: RuntimeProcess, method: str, path: str, body: bytes, named: list[str]
) -> None:
    status, answer = authenticated(runtime, method, path, body)

    assert status == 422, answer
    assert list(answer) == ["error"] and answer["error"]["code"] == "InvalidRequest", answer
    for words in named:
        assert words in answer["error"]["message"], answer


def test_a_validation_error_does_not_echo_the_value_sent(runtime: RuntimeProcess) -> None:
    secret = "AccountKey=do-not-echo-me"
    body = json.dumps({"name": "m", "path": 7, "x": secret}).encode()
    status, answer = authenticated(runtime, "POST", "/models", body)

    assert status == 422 and "body.x" in answer["error"]["message"]
    assert secret not in json.dumps(answer)


def test_the_api_description_documents_422_in_the_error_shape(runtime: RuntimeProcess) -> None:
    status, schema, _ = exchange(runtime, "GET /openapi.json HTTP/1.1\nHost: x\n")

    assert status == 200
    answer = schema["paths"]["/endpoints/{name}/deployments/{deployment}"]["put"]["responses"]["422"]
    assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorAnswer"}
    assert "HTTPValidationError" not in schema["components"]["schemas"]
