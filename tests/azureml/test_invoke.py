"""invoke() against a real HTTP server on loopback standing in for the endpoint's scoring URI."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from azure.ai.ml.entities import EndpointAuthKeys, EndpointAuthToken

from deployflow.platform import PlatformError
from tests.azureml.support import service_endpoint

KEY = "k3y-7hat-must-n0t-leak"


@dataclass
class Scorer:
    """What the fake scoring server saw, and how it answers."""

    url: str
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    status: int = 200
    body: bytes = b'{"result": [152.1]}'
    content_type: str = "application/json"


@pytest.fixture
def scorer() -> Iterator[Scorer]:
    state: Scorer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(state.status)
            self.send_header("Content-Type", state.content_type)
            self.send_header("azureml-model-deployment", self.headers.get("azureml-model-deployment", "blue"))
            self.send_header("x-request-id", "req-42")
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = Scorer(url=f"http://127.0.0.1:{server.server_address[1]}/score")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_invoke_posts_json_with_the_key_and_reads_the_answer(platform, ml_client, scorer, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    ml_client.online_endpoints.get.return_value = service_endpoint("ep-1", scoring_uri=scorer.url)
    ml_client.online_endpoints.get_keys.return_value = EndpointAuthKeys(primary_key=KEY, secondary_key="other")

    result = platform.invoke("ep-1", {"data": [[0.1, 0.2]]})

    ((headers, body),) = scorer.requests
    assert headers["authorization"] == f"Bearer {KEY}"
    assert headers["content-type"] == "application/json"
    assert "azureml-model-deployment" not in headers
    assert json.loads(body) == {"data": [[0.1, 0.2]]}
    assert (result.status_code, result.ok, result.body) == (200, True, {"result": [152.1]})
    assert (result.deployment, result.request_id) == ("blue", "req-42")
    assert result.elapsed_ms > 0
    assert "ep-1" in caplog.text  # the call is logged...
    assert KEY not in caplog.text  # ...and the key is not
    assert all(KEY not in str(r.args) for r in caplog.records)


def test_invoke_pinned_to_a_deployment_sends_the_header(platform, ml_client, scorer) -> None:
    ml_client.online_endpoints.get.return_value = service_endpoint("ep-1", scoring_uri=scorer.url)
    ml_client.online_endpoints.get_keys.return_value = EndpointAuthKeys(primary_key=KEY, secondary_key="other")

    result = platform.invoke("ep-1", '{"data": []}', deployment="green")

    ((headers, body),) = scorer.requests
    assert headers["azureml-model-deployment"] == "green"
    assert body == b'{"data": []}'
    assert result.deployment == "green"


def test_invoke_on_an_aml_token_endpoint_uses_the_token(platform, ml_client, scorer) -> None:
    ml_client.online_endpoints.get.return_value = service_endpoint("ep-1", scoring_uri=scorer.url, auth_mode="AMLToken")
    ml_client.online_endpoints.get_keys.return_value = EndpointAuthToken(access_token="tok-9", expiry_time_utc=1)
    platform.invoke("ep-1", {"data": []})
    ((headers, _),) = scorer.requests
    assert headers["authorization"] == "Bearer tok-9"


def test_a_failing_scorer_is_a_result_not_an_exception(platform, ml_client, scorer) -> None:
    scorer.status, scorer.body, scorer.content_type = 502, b"upstream died", "text/plain"
    ml_client.online_endpoints.get.return_value = service_endpoint("ep-1", scoring_uri=scorer.url)
    ml_client.online_endpoints.get_keys.return_value = EndpointAuthKeys(primary_key=KEY, secondary_key="other")
    result = platform.invoke("ep-1", {"data": []})
    assert (result.status_code, result.ok, result.body) == (502, False, "upstream died")


def test_an_unreachable_scoring_uri_is_a_platform_error_without_the_key(platform, ml_client, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again on exit: nothing listens there
    ml_client.online_endpoints.get.return_value = service_endpoint("ep-1", scoring_uri=f"http://127.0.0.1:{port}/s")
    ml_client.online_endpoints.get_keys.return_value = EndpointAuthKeys(primary_key=KEY, secondary_key="other")
    with pytest.raises(PlatformError, match="could not call the scoring URI of endpoint ep-1") as info:
        platform.invoke("ep-1", {"data": []}, timeout_s=2)
    assert KEY not in str(info.value)
    assert KEY not in caplog.text


def test_an_endpoint_without_scoring_uri_says_to_wait(platform, ml_client) -> None:
    ml_client.online_endpoints.get.return_value = service_endpoint("ep-1", state="Creating", scoring_uri="")
    with pytest.raises(PlatformError, match="no scoring URI yet"):
        platform.invoke("ep-1", {"data": []})
    ml_client.online_endpoints.get_keys.assert_not_called()
