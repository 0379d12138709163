"""The local runtime client's waits end on every terminal state, Canceled included."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deployflow.local.client import LocalRuntimeClient


class _CanceledDeployment(BaseHTTPRequestHandler):
    """Answers every GET as the runtime would for a deployment whose creation was canceled."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        parts = self.path.strip("/").split("/")  # endpoints/<endpoint>/deployments/<name>
        body = json.dumps({"endpoint_name": parts[1], "name": parts[3], "provisioning_state": "Canceled"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        return None


@pytest.fixture
def stand_in() -> Iterator[str]:
    """A stand-in control plane on loopback (the runtime itself never cancels a deployment)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CanceledDeployment)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_canceled_deployment_ends_the_wait(stand_in: str) -> None:
    with LocalRuntimeClient(stand_in, "token") as client:
        deployment = client.wait_for_deployment("shop", "green", timeout_s=5, poll_s=0.05)
    assert deployment["provisioning_state"] == "Canceled"
