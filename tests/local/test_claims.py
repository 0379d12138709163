"""Endpoint claims on a real runtime: one run holds an endpoint, others see who, release gives it back."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest

from deployflow.local.backend import LocalPlatform
from deployflow.platform.claims import CLAIM_TAG, claim, holder, release
from deployflow.platform.errors import PlatformNotFoundError
from deployflow.platform.specs import EndpointSpec
from tests.runtime.support import SAMPLE_MODEL, RuntimeProcess, deploy

pytestmark = pytest.mark.slow
FIRST, SECOND = "realtime_deployment/run-1", "realtime_deployment/run-2"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    runtime = RuntimeProcess(tmp_path_factory.mktemp("claims") / "data")
    runtime.start()
    try:
        yield runtime
    finally:
        runtime.stop()


@pytest.fixture
def platform(runtime: RuntimeProcess) -> Iterator[LocalPlatform]:
    local = LocalPlatform(runtime.control_url, (runtime.data_dir / "admin-token").read_text().strip())
    yield local
    local.close()


def test_a_claim_creates_the_missing_endpoint_and_a_second_run_is_told_who_holds_it(platform: LocalPlatform) -> None:
    assert claim(platform, "claim-new", FIRST, compute="production") is None
    assert claim(platform, "claim-new", FIRST, compute="production") is None, "claiming again is a no-op"

    assert claim(platform, "claim-new", SECOND, compute="production") == FIRST
    assert holder(platform, "claim-new") == FIRST
    assert platform.get_endpoint("claim-new").compute == "production"


def test_releasing_an_endpoint_made_for_the_claim_that_never_got_a_deployment_deletes_it(
    platform: LocalPlatform,
) -> None:
    claim(platform, "claim-empty", FIRST, compute=None)

    assert "not held by" in release(platform, "claim-empty", SECOND), "only the holder releases"
    assert "deleted" in release(platform, "claim-empty", FIRST)
    with pytest.raises(PlatformNotFoundError):
        platform.get_endpoint("claim-empty")


def test_releasing_an_endpoint_that_serves_keeps_it_its_keys_and_its_own_tags(
    platform: LocalPlatform, runtime: RuntimeProcess
) -> None:
    platform.create_or_update_endpoint(EndpointSpec("claim-live", description="the shop's", tags={"team": "ml"}))
    with runtime.client() as client:
        client.register_model("diabetes", SAMPLE_MODEL)
        deploy(client, "claim-live", "blue", model="diabetes:1")
        keys = client.keys("claim-live")
        claim(platform, "claim-live", FIRST, compute=None)
        assert platform.get_endpoint("claim-live").tags == {"team": "ml", CLAIM_TAG: FIRST}

        assert release(platform, "claim-live", FIRST) == "released endpoint claim-live"

        after = platform.get_endpoint("claim-live")
        assert (after.tags, after.description) == ({"team": "ml"}, "the shop's")
        assert client.keys("claim-live") == keys


def test_a_forced_claim_takes_over_from_a_run_that_no_longer_runs(platform: LocalPlatform) -> None:
    claim(platform, "claim-stale", FIRST, compute=None)

    assert claim(platform, "claim-stale", SECOND, compute=None, force=True) is None
    assert holder(platform, "claim-stale") == SECOND


def test_runs_claiming_at_once_leave_one_holder_and_the_others_told_who(
    platform: LocalPlatform, runtime: RuntimeProcess
) -> None:
    """Runs triggered together all read the endpoint unclaimed; only one may come away holding it."""
    runs = [f"realtime_deployment/together-{i}" for i in range(3)]
    token = (runtime.data_dir / "admin-token").read_text().strip()
    platform.create_or_update_endpoint(EndpointSpec("claim-together"))
    start = Barrier(len(runs))

    def claim_at_once(run: str) -> str | None:
        own = LocalPlatform(runtime.control_url, token)  # each run its own worker and connection
        try:
            start.wait()
            return claim(own, "claim-together", run, compute=None)
        finally:
            own.close()

    with ThreadPoolExecutor(len(runs)) as pool:
        answers = list(pool.map(claim_at_once, runs))

    winner = holder(platform, "claim-together")
    assert winner in runs and answers.count(None) == 1, answers
    assert answers == [None if run == winner else winner for run in runs]
