"""What model code may see: an environment built from scratch, and, under root, a user of its own.

Model code (score.py in a replica or validate's server, a batch worker, a requirement's build
step) is not trusted with the runtime's secrets. Its environment is rebuilt from a short list,
so no ``AIRFLOW_CONN_*``, token or connection string is inherited. When the runtime runs as
root, its children switch to an unprivileged user (``deployflow``, created if absent) before
they exec: they can read their package and environment (shared with that user's group), write
only the log file descriptors they are handed, and cannot open the admin token or the state
database (owner-only files of root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CHILD_USER = "deployflow"
# Folders of the data dir model code reads (its package, its environment) and the one it passes through
# (to its batch job's own folder); everything else there is owner-only.
SHARED_FOLDERS = ("models", "envs")
PASSED_FOLDERS = ("jobs",)
SAME_USER = "root"  # --child-user root: children keep the runtime's identity (not recommended)
CHILD_USER_VARIABLE = "DEPLOYFLOW_CHILD_USER"  # the default of --child-user, and validate's setting
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
# What an environment build may need from the caller's environment: where packages come from, how to
# get there (proxies, certificates) and the installers' caches. Nothing else reaches pip, uv or setup.py.
BUILD_VARIABLES = (
    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_NO_INDEX",
    "UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX", "UV_FIND_LINKS", "UV_CACHE_DIR",
    "UV_NO_INDEX", "UV_OFFLINE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "XDG_CACHE_HOME",
)  # fmt: skip


class IsolationError(RuntimeError):
    """Model code could not be given its own user, or that user could not reach what it must read."""


@dataclass(frozen=True)
class ChildUser:
    """The unprivileged user model code runs as when the runtime is root."""

    name: str
    uid: int
    gid: int
    home: str

    def become(self) -> None:
        """In the forked child, before exec: drop every group and root's identity for good."""
        os.setgroups([])
        os.setgid(self.gid)
        os.setuid(self.uid)


def minimal_environment(extra: Mapping[str, str] | None = None, *, user: ChildUser | None = None) -> dict[str, str]:
    """The environment every model process starts from: a path, a home, a locale, and ``extra``."""
    return {
        "PATH": os.environ.get("PATH", DEFAULT_PATH),
        "HOME": user.home if user else os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        **(extra or {}),
    }


def build_environment() -> dict[str, str]:
    """The environment of an environment build: the minimal one plus the installers' own settings."""
    return minimal_environment({name: os.environ[name] for name in BUILD_VARIABLES if name in os.environ})


def child_user(name: str | None = None) -> ChildUser | None:
    """The user children run as: None when the caller is not root (they are that user already) or when
    ``root`` is asked for; ``$DEPLOYFLOW_CHILD_USER``, else ``deployflow`` (created as a system user if it
    does not exist)."""
    if os.geteuid() != 0:
        return None
    name = name or os.environ.get(CHILD_USER_VARIABLE) or CHILD_USER
    if name == SAME_USER:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if name != CHILD_USER:
            raise IsolationError(f"user {name} does not exist; create it or leave --child-user out") from None
        entry = _create_user(name)
    if entry.pw_uid == 0:
        raise IsolationError(f"user {name} is root; model code must run as an unprivileged user")
    return ChildUser(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir or "/nonexistent")


def _create_user(name: str) -> pwd.struct_passwd:
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    args = [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
            "--shell", "/usr/sbin/nologin", name]  # fmt: skip
    try:
        subprocess.run(args, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", None) or e
        raise IsolationError(
            f"model code runs as user {name} when the runtime is root, and it could not be created ({detail}); "
            f"create it (useradd --system {name}) or pass --child-user with an existing unprivileged user"
        ) from e
    return pwd.getpwnam(name)


def blocked_at(path: Path, user: ChildUser) -> Path | None:
    """The first folder on the way to ``path`` that ``user`` may not pass through, or None."""
    target = path.resolve()
    for folder in [*reversed(target.parents), target]:
        if folder == target and not target.is_dir():
            break
        info = folder.stat()
        if info.st_uid == user.uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid == user.gid:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return folder
    return None


def require_reachable(path: Path, user: ChildUser, what: str) -> None:
    """Fail, saying what to change, when ``user`` cannot reach ``path``."""
    folder = blocked_at(path, user)
    if folder is not None:
        mode = stat.filemode(folder.stat().st_mode)
        raise IsolationError(
            f"{what} {path} is out of reach of user {user.name}, whom model code runs as: {folder} is {mode} "
            f"(owner {folder.owner()}). Make it traversable for that user, move it, or pass --child-user root "
            "to let model code run as root"
        )


def model_python(user: ChildUser | None, wanted: str | None = None) -> str:
    """The interpreter model environments are built from: ``wanted`` if given, else the running one, else
    (when ``user`` cannot reach that, e.g. a Python under root's 0700 home) the system's own Python of the
    same version, so that root's default needs no --child-user root nor a chmod of /root."""
    if wanted or user is None:
        return wanted or sys.executable
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [sys.executable, shutil.which(version, path=DEFAULT_PATH), f"/usr/bin/{version}"]
    for candidate in dict.fromkeys(c for c in candidates if c):
        python = Path(candidate).resolve()
        if python.is_file() and os.access(python, os.X_OK) and blocked_at(python.parent, user) is None:
            return candidate
    return sys.executable  # check_reachable / the build then says what blocks it and what to do


def share(path: Path, user: ChildUser) -> None:
    """Let ``user`` read (not write) ``path`` and everything under it, through its group."""
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        if item.is_symlink():
            continue
        info = item.stat()
        os.chown(item, -1, user.gid)
        extra = stat.S_IRGRP | (stat.S_IXGRP if stat.S_ISDIR(info.st_mode) or info.st_mode & stat.S_IXUSR else 0)
        os.chmod(item, (info.st_mode & 0o7777 & ~0o022) | extra)


def let_through(folder: Path, user: ChildUser) -> None:
    """Let ``user`` pass through ``folder`` (to a path it knows) without listing or reading it."""
    info = folder.stat()
    if info.st_uid != user.uid and not (info.st_gid == user.gid and info.st_mode & stat.S_IXGRP):
        os.chown(folder, -1, user.gid)
        os.chmod(folder, (info.st_mode & 0o7777) | stat.S_IXGRP)


def hand_over(path: Path, user: ChildUser) -> None:
    """Make ``user`` the owner of ``path`` and everything under it (a job's folder it writes into)."""
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.lchown(item, user.uid, user.gid)


def owner_only(path: Path) -> None:
    """Folders 0700 and files 0600 (0700 for executables) at and under ``path``; symlinks are left alone."""
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        if item.is_symlink():
            continue
        mode = item.stat().st_mode
        os.chmod(item, 0o700 if stat.S_ISDIR(mode) or mode & stat.S_IXUSR else 0o600)


def secure_data_dir(data_dir: Path, user: ChildUser | None) -> None:
    """Owner-only modes for the runtime's data: the admin token, the state database with its WAL and SHM
    files, logs and job folders. With a child user, the data dir and ``jobs/`` let it pass through,
    and ``models/`` and ``envs/`` are shared with its group read-only (their contents as written)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in (*SHARED_FOLDERS, *PASSED_FOLDERS):
        (data_dir / name).mkdir(exist_ok=True)
    os.chmod(data_dir, 0o700)
    for item in data_dir.iterdir():
        if item.name not in SHARED_FOLDERS:
            owner_only(item)
    for name in SHARED_FOLDERS:
        os.chmod(data_dir / name, 0o700)
    if user is not None:
        for folder in (data_dir, *(data_dir / name for name in PASSED_FOLDERS)):
            let_through(folder, user)
        for name in SHARED_FOLDERS:
            os.chown(data_dir / name, -1, user.gid)
            os.chmod(data_dir / name, 0o750)
