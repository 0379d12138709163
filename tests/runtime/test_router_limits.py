"""The router against slow, idle, crowding and oversized clients, over raw sockets to a real runtime.

The runtime runs with short timeouts (2 s to read a request, 3 s of idle keep-alive) and 8
connections at most, so that each limit can be reached in a test's time.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployflow.runtime.config import RouterLimits
from tests.runtime.support import (
    SAMPLE_MODEL,
    RawAnswer,
    RuntimeProcess,
    deploy,
    read_answer,
    sample_runtime,
    split_answer,
)

pytestmark = pytest.mark.slow

READ_TIMEOUT_S, IDLE_TIMEOUT_S, MAX_CONNECTIONS = 2.0, 3.0, 8
MAX_JSON_DEPTH = RouterLimits().max_json_depth
# The sweep looks every quarter of the shorter timeout: allow that, and a loaded machine.
SLACK_S = 2.0
ENDPOINT = "limits"
SAMPLE_BODY = (SAMPLE_MODEL / "sample-request.json").read_bytes()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RuntimeProcess, str]]:
    data_dir = tmp_path_factory.mktemp("limits") / "data"
    options = ["--read-timeout-s", str(READ_TIMEOUT_S), "--idle-timeout-s", str(IDLE_TIMEOUT_S),
               "--max-connections", str(MAX_CONNECTIONS)]  # fmt: skip
    with sample_runtime(data_dir, *options) as (runtime, client):
        client.put_endpoint(ENDPOINT, compute="test")
        deploy(client, ENDPOINT, "blue", instance_count=1)
        client.set_traffic(ENDPOINT, {"blue": 100})
        yield runtime, client.keys(ENDPOINT)["primary_key"]


def connect(runtime: RuntimeProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", runtime.router_port), timeout=IDLE_TIMEOUT_S + 3 * SLACK_S)


def score_request(key: str, *, path: str = f"/endpoints/{ENDPOINT}/score", extra: bytes = b"") -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(SAMPLE_BODY)}\r\n").encode()  # fmt: skip
    return head + extra + b"\r\n" + SAMPLE_BODY


def assert_refused(answer: RawAnswer | None, status: int, code: str, sock: socket.socket) -> None:
    """The router's JSON error shape, and the connection closed after it."""
    assert answer is not None, f"closed with no answer; expected {status}"
    assert (answer.status, answer.headers["content-type"]) == (status, "application/json"), answer
    assert answer.json()["error"]["code"] == code, answer.body
    assert answer.headers["connection"] == "close"
    assert sock.recv(1) == b"", "the connection stayed open after the refusal"


def test_101_headers_is_431(served: tuple[RuntimeProcess, str]) -> None:
    runtime, key = served
    with connect(runtime) as sock:  # 4 of the request's own and 97 more
        sock.sendall(score_request(key, extra=b"".join(b"x-h%d: v\r\n" % i for i in range(97))))
        answer = read_answer(sock)
        assert_refused(answer, 431, "RequestHeaderFieldsTooLarge", sock)
    assert "96 header fields" in answer.json()["error"]["message"]


def test_as_many_headers_as_the_scoring_server_takes_are_served(served: tuple[RuntimeProcess, str]) -> None:
    """96: gunicorn behind the router takes 100 header fields, and the router adds its own."""
    runtime, key = served
    with connect(runtime) as sock:  # 4 of the request's own and 92 more
        sock.sendall(score_request(key, extra=b"".join(b"x-h%d: v\r\n" % i for i in range(92))))
        answer = read_answer(sock)
        assert answer is not None and answer.status == 200, answer
        sock.sendall(score_request(key, extra=b"".join(b"x-h%d: v\r\n" % i for i in range(93))))
        assert_refused(read_answer(sock), 431, "RequestHeaderFieldsTooLarge", sock)


def test_a_header_field_longer_than_the_scoring_server_takes_is_431(served: tuple[RuntimeProcess, str]) -> None:
    runtime, key = served
    with connect(runtime) as sock:
        sock.sendall(score_request(key, extra=b"x-long: " + b"b" * 8180 + b"\r\n"))
        answer = read_answer(sock)
        assert answer is not None and answer.status == 200, answer
        sock.sendall(score_request(key, extra=b"x-long: " + b"b" * 8190 + b"\r\n"))
        assert_refused(read_answer(sock), 431, "RequestHeaderFieldsTooLarge", sock)


@pytest.mark.parametrize("ending", [b"\r\n", b""], ids=["whole", "never-ending"])
def test_a_header_block_over_16_kib_is_431(served: tuple[RuntimeProcess, str], ending: bytes) -> None:
    """Also when the oversized header never ends, so the parser would otherwise gather it forever."""
    runtime, key = served
    with connect(runtime) as sock:
        sock.sendall(f"POST /endpoints/{ENDPOINT}/score HTTP/1.1\r\nAuthorization: Bearer {key}\r\n".encode())
        sock.sendall(b"x-big: " + b"a" * 26 * 1024 + ending)
        assert_refused(read_answer(sock), 431, "RequestHeaderFieldsTooLarge", sock)


def test_a_request_after_a_large_body_on_the_same_connection_is_served(served: tuple[RuntimeProcess, str]) -> None:
    """The head cap counts one request's head, not the bytes of the requests before it."""
    runtime, key = served
    padded = SAMPLE_BODY[:-1] + b', "padding": "' + b"p" * 400_000 + b'"}'
    first = score_request(key).replace(b"Content-Length: %d" % len(SAMPLE_BODY), b"Content-Length: %d" % len(padded))
    first = first[: -len(SAMPLE_BODY)] + padded
    with connect(runtime) as sock:
        second = score_request(key)
        sock.sendall(first + second[:20])  # pipelined: the second head begins right after the body
        time.sleep(0.3)
        sock.sendall(second[20:])
        data, answers = b"", []
        while len(answers) < 2:
            while (split := split_answer(data)) is None:
                chunk = sock.recv(65536)
                assert chunk, f"closed after {len(answers)} answers"
                data += chunk
            answers.append(split[0])
            data = split[1]
    assert answers[1].status == 200, answers[1]


def test_a_20_kib_url_is_414(served: tuple[RuntimeProcess, str]) -> None:
    runtime, key = served
    with connect(runtime) as sock:
        sock.sendall(score_request(key, path=f"/endpoints/{ENDPOINT}/score?q={'a' * 20 * 1024}"))
        assert_refused(read_answer(sock), 414, "UriTooLong", sock)


def test_a_slowloris_connection_gets_408_after_the_read_timeout(served: tuple[RuntimeProcess, str]) -> None:
    """A head sent a byte at a time, never finished: the connection is not held beyond the read timeout."""
    runtime, key = served
    with connect(runtime) as sock:
        started = time.monotonic()
        sock.sendall(f"POST /endpoints/{ENDPOINT}/score HTTP/1.1\r\nAuthorization: Bearer {key}\r\n".encode())
        sock.settimeout(0.25)
        answer = None
        for byte in b"x-slow: " + b"z" * 200:
            try:
                sock.send(bytes([byte]))
                answer = read_answer(sock)
                break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                pytest.fail("the router dropped the connection without its 408")
        elapsed = time.monotonic() - started
        sock.settimeout(5)
        assert_refused(answer, 408, "RequestReadTimeout", sock)
    assert READ_TIMEOUT_S <= elapsed < READ_TIMEOUT_S + SLACK_S


def test_a_body_that_trickles_in_gets_408(served: tuple[RuntimeProcess, str]) -> None:
    runtime, key = served
    with connect(runtime) as sock:
        request = score_request(key)
        sock.sendall(request[:-10])
        started = time.monotonic()
        answer = read_answer(sock)
        elapsed = time.monotonic() - started
        assert_refused(answer, 408, "RequestReadTimeout", sock)
    assert READ_TIMEOUT_S - 0.5 <= elapsed < READ_TIMEOUT_S + SLACK_S


def test_an_idle_keep_alive_connection_is_closed_without_an_answer(served: tuple[RuntimeProcess, str]) -> None:
    runtime, key = served
    with connect(runtime) as sock:
        sock.sendall(score_request(key))
        answer = read_answer(sock)
        assert answer is not None and answer.status == 200 and answer.headers["connection"] == "keep-alive"
        idle_from = time.monotonic()
        assert read_answer(sock) is None, "the router answered a connection that asked nothing"
        idle = time.monotonic() - idle_from
    assert IDLE_TIMEOUT_S - 0.5 <= idle < IDLE_TIMEOUT_S + SLACK_S


def test_a_connection_over_the_limit_gets_503_and_a_freed_one_is_taken(served: tuple[RuntimeProcess, str]) -> None:
    runtime, key = served
    held = [connect(runtime) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)  # the router has accepted them all
        with connect(runtime) as extra:
            answer = read_answer(extra)
            assert_refused(answer, 503, "TooManyConnections", extra)
        assert "--max-connections" in answer.json()["error"]["message"]
        held.pop().close()
        time.sleep(0.2)
        with connect(runtime) as sock:
            sock.sendall(score_request(key))
            answer = read_answer(sock)
        assert answer is not None and answer.status == 200, answer
    finally:
        for sock in held:
            sock.close()


def deep_request(key: str, body: bytes, content_type: str = "application/json") -> bytes:
    head = (f"POST /endpoints/{ENDPOINT}/score HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
    return head + body


def answers_given(runtime: RuntimeProcess) -> int:
    with runtime.client() as client:
        return client.get_deployment(ENDPOINT, "blue")["requests"]


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", ""])
def test_a_json_body_nested_100000_deep_is_400_before_it_reaches_the_model(
    served: tuple[RuntimeProcess, str], content_type: str
) -> None:
    runtime, key = served
    before = answers_given(runtime)
    request = deep_request(key, b"[" * 100_000)
    if not content_type:  # no Content-Type at all: scanned as JSON
        request = request.replace(b"Content-Type: \r\n", b"")
    with connect(runtime) as sock:
        sock.sendall(request)
        answer = read_answer(sock)

    assert answer is not None and (answer.status, answer.headers["content-type"]) == (400, "application/json")
    error = answer.json()["error"]
    assert error["code"] == "JsonTooDeep" and "100000 levels" in error["message"], error
    assert f"at most {MAX_JSON_DEPTH} (--max-json-depth)" in error["message"]
    assert answers_given(runtime) == before, "the body reached the deployment"


def test_a_body_nested_as_deep_as_the_limit_and_brackets_inside_strings_pass_the_router(
    served: tuple[RuntimeProcess, str],
) -> None:
    """What the router lets through is score.py's to judge: here a 400 from the sample model, saying why."""
    runtime, key = served
    at_limit = b'{"data": ' + b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1) + b"}"
    in_strings = json.dumps({"data": [["[" * 5000 + "{" * 5000] * 10]}).encode()
    for body in (at_limit, in_strings):
        before = answers_given(runtime)
        with connect(runtime) as sock:
            sock.sendall(deep_request(key, body))
            answer = read_answer(sock)
        assert answer is not None and answer.status == 400, answer
        assert answer.json()["error"]["code"] == "BadRequest" and "row 0" in answer.json()["error"]["message"]
        assert answers_given(runtime) == before + 1, "the model did not answer it"


def test_a_deep_body_the_router_does_not_scan_gets_a_400_from_the_sample_model_not_a_500(
    served: tuple[RuntimeProcess, str],
) -> None:
    """Not declared JSON (text/plain), it reaches score.py, whose parser runs out of recursion: bad input, a 400."""
    runtime, key = served
    with connect(runtime) as sock:
        sock.sendall(deep_request(key, b"[" * 100_000, content_type="text/plain"))
        answer = read_answer(sock)

    assert answer is not None and answer.status == 400, answer
    assert answer.headers["azureml-model-deployment"] == "blue", "the router answered, not the model"
    assert "nests too deeply" in answer.json()["error"]["message"], answer.body


def test_the_runtime_still_serves_after_the_refusals(served: tuple[RuntimeProcess, str]) -> None:
    runtime, key = served
    time.sleep(0.2)
    with runtime.client() as client:
        assert client.health()
        uri = f"http://127.0.0.1:{runtime.router_port}/endpoints/{ENDPOINT}/score"
        result = client.score(uri, json.loads(SAMPLE_BODY), key)
    assert result.status_code == 200
    assert result.body == pytest.approx(json.loads((SAMPLE_MODEL / "sample-response.json").read_text()), rel=1e-9)


def test_the_limits_are_runtime_options() -> None:
    from deployflow.runtime.__main__ import parse_args

    config = parse_args(["--data-dir", str(Path("/tmp")), "--max-headers", "50", "--read-timeout-s", "5",
                         "--max-json-depth", "64"])  # fmt: skip
    limits = config.router_limits
    assert (limits.max_headers, limits.read_timeout_s, limits.max_json_depth) == (50, 5.0, 64)
    with pytest.raises(SystemExit):
        parse_args(["--data-dir", "/tmp", "--idle-timeout-s", "0"])
