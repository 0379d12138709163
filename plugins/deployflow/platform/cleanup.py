"""Best-effort cleanup: remove what a failed step left behind without hiding why it failed.

Every removal after a failure (a half-created deployment, a running job, staged copies) goes
through here: a removal that fails is logged at warning level with what to remove by hand,
and the error that started the cleanup is the one the caller sees.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class Logger(Protocol):
    """What the helpers log through: a stdlib logger, or an operator's or trigger's ``self.log``."""

    def debug(self, msg: str, *args: Any) -> Any: ...

    def warning(self, msg: str, *args: Any) -> Any: ...


def remove_quietly(remove: Callable[[], T], what: str, logger: Logger = log) -> T | None:
    """Run ``remove`` (``what`` says it in words: "delete deployment ep/green"); its result, or None if it failed.

    Success is logged at debug level only: callers say what the result means in their own words.

    Never raises (KeyboardInterrupt and SystemExit aside): a cleanup runs while another error is on
    its way, or in ``on_kill``, where any exception of its own would replace the one that matters.
    """
    try:
        result = remove()
    except Exception as e:  # best effort by design: whatever went wrong is logged, not raised
        logger.warning("cleanup: could not %s (%s: %s); %s by hand", what, type(e).__name__, e, what)
        return None
    logger.debug("cleanup: %s: done", what)
    return result


@contextmanager
def removed_on_error(remove: Callable[[], object], what: str, logger: Logger = log) -> Iterator[None]:
    """If the block raises, ``remove_quietly(remove, what)`` and re-raise the block's own error."""
    try:
        yield
    except BaseException:
        remove_quietly(remove, what, logger)
        raise


@contextmanager
def removed_afterwards(remove: Callable[[], object], what: str, logger: Logger = log) -> Iterator[None]:
    """However the block ends, ``remove_quietly(remove, what)``; the block's error, if any, propagates."""
    try:
        yield
    finally:
        remove_quietly(remove, what, logger)
