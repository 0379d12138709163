"""Child-process helpers the serving and the jobs side share: death signal, identity, logs and their rotation."""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from deployflow.runtime.isolation import ChildUser

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 20
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True)


def dying_with_runtime(then: Callable[[], None] | None = None, user: ChildUser | None = None) -> Callable[[], None]:
    """A ``preexec_fn`` that runs ``then`` (e.g. joining cgroups, which needs the runtime's rights), becomes
    ``user`` when given, then sets the death signal (SIGKILL when the runtime dies; a change of user clears it).

    Processes must be spawned on the event loop's thread: the signal follows the spawning thread.
    """
    parent = os.getpid()

    def in_child() -> None:
        if then is not None:
            then()
        if user is not None:
            user.become()
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the runtime died before the signal was set
            os._exit(1)

    return in_child


def log_descriptor(path: Path) -> int:
    """A log file to hand to a child as its output: owner-only (0600), appended to, folders made as needed.

    The child writes through the inherited descriptor, so it needs no right to the file or its folder.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def open_log(path: Path) -> BinaryIO:
    """``log_descriptor`` as a file object."""
    return os.fdopen(log_descriptor(path), "ab")


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16_384))
            return b"\n".join(f.read().splitlines()[-lines:]).decode(errors="replace")
    except OSError:
        return ""


def rotate_log(path: Path, cap_bytes: int) -> None:
    """Keep a log near ``cap_bytes``: copy it to ``<name>.1`` and truncate it (its writer appends)."""
    try:
        if path.stat().st_size <= cap_bytes:
            return
        with open(path, "rb") as src, open(path.with_suffix(path.suffix + ".1"), "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.truncate(path, 0)
    except OSError as e:
        log.warning("could not rotate %s: %s", path, e)
