"""A real local runtime on free loopback ports, shared by the tests of a module, and a Prometheus beside it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deployflow.local.client import LocalRuntimeClient
from deployflow.metrics.prometheus import INSTALL_HINT, PrometheusServer, find_binary
from deployflow.runtime.serving.replicas import free_port
from tests.runtime.support import RuntimeProcess


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    process = RuntimeProcess(tmp_path_factory.mktemp("runtime") / "data")
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(runtime: RuntimeProcess) -> Iterator[LocalRuntimeClient]:
    with runtime.client() as c:
        yield c


@pytest.fixture(scope="module")
def prometheus(runtime: RuntimeProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A real Prometheus scraping the module's runtime every 2 s; skipped only where the binary is absent."""
    if find_binary() is None:
        pytest.skip(f"no prometheus binary on PATH (Debian's package: {INSTALL_HINT}); /metrics is tested directly")
    server = PrometheusServer(
        f"127.0.0.1:{runtime.control_port}", tmp_path_factory.mktemp("prometheus"), port=free_port()
    )
    server.start()
    yield server
    server.stop()
