"""Fuzzing a real runtime, bounded in time: the control API from its own OpenAPI schema (schemathesis),
and the router's request parsing from raw bytes (hypothesis). Neither may answer 5xx, and the
runtime must still serve afterwards.

The runtime reads a request for 1 s at most and keeps an idle connection 2 s, so that a fuzzed
request left unfinished is answered (408) within the example's time.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from tests.runtime.support import SAMPLE_MODEL, RuntimeProcess, deploy, read_answer, sample_runtime

pytestmark = pytest.mark.slow

ENDPOINT = "fuzzed"
SAMPLE_BODY = (SAMPLE_MODEL / "sample-request.json").read_bytes()
# No example database: a CI run starts clean, and the worktree gets no .hypothesis folder.
BOUNDED = {"deadline": None, "database": None, "suppress_health_check": list(HealthCheck)}


class Served:
    def __init__(self, runtime: RuntimeProcess, key: str) -> None:
        self.runtime, self.key = runtime, key

    def assert_live(self) -> None:
        """Health answers and the sample request still scores."""
        with self.runtime.client() as client:
            assert client.health()
            uri = f"http://127.0.0.1:{self.runtime.router_port}/endpoints/{ENDPOINT}/score"
            result = client.score(uri, json.loads(SAMPLE_BODY), self.key)
        assert result.status_code == 200
        assert result.body == pytest.approx(json.loads((SAMPLE_MODEL / "sample-response.json").read_text()), rel=1e-9)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    with sample_runtime(data_dir, "--read-timeout-s", "1", "--idle-timeout-s", "2") as (runtime, client):
        client.put_endpoint(ENDPOINT, compute="test")
        deploy(client, ENDPOINT, "blue", instance_count=1)
        client.set_traffic(ENDPOINT, {"blue": 100})
        yield Served(runtime, client.keys(ENDPOINT)["primary_key"])


# --- the router ---------------------------------------------------------------------------------

TOKEN = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_!#$%&'*+.^`|~"),
                min_size=1, max_size=20)  # fmt: skip
ANY_BYTES = st.binary(max_size=300)
METHODS = st.one_of(st.sampled_from([b"POST", b"GET", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"CONNECT"]),
                    TOKEN.map(str.encode), ANY_BYTES)  # fmt: skip
PATHS = st.one_of(
    st.just(f"/endpoints/{ENDPOINT}/score".encode()),
    st.builds(lambda tail: f"/endpoints/{ENDPOINT}/score{tail}".encode(), st.sampled_from(["?a=1", "/", "?", "#x"])),
    st.builds(lambda name: f"/endpoints/{name}/score".encode(), TOKEN),
    st.text(max_size=60).map(lambda text: ("/" + text).encode()),
    st.sampled_from([b"*", b"", b"http://127.0.0.1/endpoints/fuzzed/score", b"/endpoints//score", b"/%00"]),
    ANY_BYTES,
)
VERSIONS = st.one_of(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.1 x", b""]),
                     ANY_BYTES)  # fmt: skip
HEADER_NAMES = st.one_of(
    st.sampled_from([b"Content-Type", b"Transfer-Encoding", b"Connection", b"Expect", b"Host", b"Authorization",
                     b"azureml-model-deployment", b"x-request-id", b"Upgrade", b"x-deployflow-probe"]),
    TOKEN.map(str.encode), ANY_BYTES,
)  # fmt: skip
HEADER_VALUES = st.one_of(
    st.sampled_from([b"chunked", b"close", b"keep-alive", b"100-continue", b"application/json", b"blue", b"",
                     b"Bearer nope", b"gzip, chunked", b"h2c"]),
    st.text(max_size=40).map(str.encode), ANY_BYTES,
)  # fmt: skip
BODIES = st.one_of(
    st.just(SAMPLE_BODY),
    st.binary(max_size=2000),
    st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
                 lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=5),
                 max_leaves=30).map(lambda value: json.dumps({"data": value}).encode()),
)  # fmt: skip


PARTS = ["method", "path", "version", "headers", "framing", "separator"]


@st.composite
def requests(draw: st.DrawFn, key: str) -> bytes:
    """A well-formed request, or in half the draws one with one part drawn wild (request line, header set, framing, line
    ends), so that requests reach routing, the key check and the replica as well as the parser; the
    body is always drawn freely, and one request in twenty is bytes alone."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.binary(min_size=1, max_size=3000))
    wild = draw(st.sampled_from([None] * len(PARTS) + PARTS))

    def part(name: str, usual: st.SearchStrategy, odd: st.SearchStrategy) -> object:
        return draw(odd if wild == name else usual)

    method = part("method", st.sampled_from([b"POST", b"POST", b"GET"]), METHODS)
    path = part(
        "path", st.sampled_from([f"/endpoints/{ENDPOINT}/score{tail}".encode() for tail in ("", "?a=1")]), PATHS
    )
    version = part("version", st.just(b"HTTP/1.1"), VERSIONS)
    usual_header = st.tuples(TOKEN.map(str.encode), TOKEN.map(str.encode))
    headers = part(
        "headers", st.lists(usual_header, max_size=6), st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=12)
    )
    if draw(st.integers(0, 3)) > 0:
        headers.append((b"Authorization", f"Bearer {key}".encode()))
    body = draw(BODIES)
    framing = part("framing", st.just("length"), st.sampled_from(["chunked", "wrong-length", "none"]))
    if framing == "length":
        headers.append((b"Content-Length", str(len(body)).encode()))
    elif framing == "wrong-length":
        headers.append((b"Content-Length", draw(st.sampled_from([b"-1", b"abc", b"99999999999999999999", b"1, 2",
                                                                 str(len(body) + 5).encode(), b""]))))  # fmt: skip
    elif framing == "chunked":
        headers.append((b"Transfer-Encoding", b"chunked"))
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if draw(st.booleans()) else body
    separator = part("separator", st.just(b"\r\n"), st.sampled_from([b"\n", b"\r"]))
    head = separator.join([b" ".join([method, path, version]), *(name + b": " + value for name, value in headers)])
    return head + separator + separator + body


@settings(max_examples=200, **BOUNDED)
@given(data=st.data())
def test_the_routers_parsing_answers_4xx_json_or_closes_never_5xx(served: Served, data: st.DataObject) -> None:
    request = data.draw(requests(served.key), label="request")
    with socket.create_connection(("127.0.0.1", served.runtime.router_port), timeout=10) as sock:
        try:
            sock.sendall(request)
            answer = read_answer(sock)
        except ConnectionResetError:  # closed while unread bytes were in flight: a clean refusal, in TCP
            return
        except TimeoutError:
            pytest.fail("the router neither answered nor closed within 10 s (its read timeout is 1 s)")
    if answer is None:
        return
    assert answer.status < 500, (answer.status, answer.body[:300])
    if answer.status >= 400:
        assert answer.headers["content-type"] == "application/json", answer.headers
        if "azureml-model-deployment" in answer.headers:
            # the deployment's own refusal, passed through as Azure ML does: the score.py's error shape, or
            # azmlinfsrv's {"message"} for a body it cannot decode
            assert set(answer.json()) & {"error", "message"}, answer.body[:300]
        else:
            error = answer.json()["error"]
            assert isinstance(error["code"], str) and isinstance(error["message"], str), error


def test_the_runtime_still_serves_after_the_router_fuzz(served: Served) -> None:
    served.assert_live()


# --- the control API ----------------------------------------------------------------------------


# Hypothesis strategies from the schema rather than schemathesis' pytest loader, whose from_fixture
# sets a pytest node attribute that pytest 9 no longer has.
@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_the_control_api_never_answers_5xx(served: Served, mode: schemathesis.GenerationMode) -> None:
    """Valid and invalid requests to every operation, authenticated: 4xx for what is wrong, never 5xx."""
    control = served.runtime.control_url
    schema = schemathesis.openapi.from_url(f"{control}/openapi.json", timeout=10)
    token = (served.runtime.data_dir / "admin-token").read_text().strip()
    statuses: list[int] = []

    @settings(max_examples=150, **BOUNDED)
    @given(case=schema.as_strategy(mode))
    def call(case: schemathesis.Case) -> None:
        response = case.call(base_url=control, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        statuses.append(response.status_code)
        case.validate_response(response, checks=[not_a_server_error])

    call()
    assert len(statuses) >= 100, f"only {len(statuses)} requests were sent"
    assert any(400 <= status < 500 for status in statuses), "no request was refused: the fuzz sent nothing wrong"


def test_the_runtime_still_serves_after_the_control_api_fuzz(served: Served) -> None:
    served.assert_live()
