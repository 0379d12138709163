"""deployflow.platform.cleanup: best-effort removal; the failure that started it is the one the caller sees."""

from __future__ import annotations

import logging

import pytest

from deployflow.platform.cleanup import remove_quietly, removed_afterwards, removed_on_error
from deployflow.platform.errors import PlatformError

log = logging.getLogger("tests.cleanup")


class Removal:
    """A removal that records each call and fails with ``error`` when given one."""

    def __init__(self, error: Exception | None = None, result: object = True) -> None:
        self.error, self.result, self.calls = error, result, 0

    def __call__(self) -> object:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.result


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_removal_that_works_returns_its_result_and_warns_of_nothing(caplog: pytest.LogCaptureFixture) -> None:
    removal = Removal(result=3)
    with caplog.at_level(logging.DEBUG, logger="tests.cleanup"):
        assert remove_quietly(removal, "delete deployment ep/green", log) == 3
    assert removal.calls == 1
    assert warnings(caplog) == []


@pytest.mark.parametrize("error", [PlatformError("HTTP 503 from the runtime"), RuntimeError("connection reset")])
def test_a_removal_that_fails_says_what_to_remove_by_hand_and_does_not_raise(
    caplog: pytest.LogCaptureFixture, error: Exception
) -> None:
    with caplog.at_level(logging.WARNING, logger="tests.cleanup"):
        assert remove_quietly(Removal(error), "delete deployment ep/green", log) is None
    (message,) = warnings(caplog)
    assert "could not delete deployment ep/green" in message
    assert str(error) in message and type(error).__name__ in message
    assert message.endswith("delete deployment ep/green by hand")


def test_the_original_error_survives_a_cleanup_that_fails(caplog: pytest.LogCaptureFixture) -> None:
    removal = Removal(PlatformError("the runtime is down"))
    with caplog.at_level(logging.WARNING, logger="tests.cleanup"):
        with pytest.raises(ValueError, match="deployment failed to provision"):
            with removed_on_error(removal, "delete deployment ep/green", log):
                raise ValueError("deployment failed to provision")
    assert removal.calls == 1
    assert "could not delete deployment ep/green" in warnings(caplog)[0]


def test_removed_on_error_leaves_things_alone_when_the_block_succeeds() -> None:
    removal = Removal()
    with removed_on_error(removal, "delete deployment ep/green", log):
        pass
    assert removal.calls == 0


@pytest.mark.parametrize("fails", [False, True])
def test_removed_afterwards_removes_however_the_block_ends(fails: bool, caplog: pytest.LogCaptureFixture) -> None:
    removal = Removal(RuntimeError("still provisioning"))
    with caplog.at_level(logging.WARNING, logger="tests.cleanup"):
        if fails:
            with pytest.raises(KeyError):
                with removed_afterwards(removal, "delete profiling deployment ep/profile-0", log):
                    raise KeyError("the block's own error")
        else:
            with removed_afterwards(removal, "delete profiling deployment ep/profile-0", log):
                pass
    assert removal.calls == 1
    assert "could not delete profiling deployment ep/profile-0" in warnings(caplog)[0]


def test_an_interrupt_during_cleanup_is_not_swallowed() -> None:
    with pytest.raises(KeyboardInterrupt):
        remove_quietly(Removal(KeyboardInterrupt()), "cancel batch job j-1", log)  # type: ignore[arg-type]
