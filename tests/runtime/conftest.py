"""A real local runtime on free loopback ports, shared by the tests of a module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deployflow.local.client import LocalRuntimeClient
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
