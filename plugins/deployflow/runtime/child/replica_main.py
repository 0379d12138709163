"""Start one replica: Azure ML's inference server (azmlinfsrv), bound to loopback.

Runs with the model environment's interpreter, so it imports nothing from deployflow.
azmlinfsrv binds 0.0.0.0 and has no host option; an unauthenticated scoring port must not
be open on every interface, so the bind address is set here before the server starts.
Arguments are azmlinfsrv's own (--entry_script, --model_dir, --port, --worker_count).

The server's gunicorn workers are forked from this process: each is given the same death
signal, so a replica killed outright (the runtime gone, SIGKILL) takes its workers with it
instead of leaving them orphaned.

With ``DEPLOYFLOW_REPLICA_SOCKET`` set, gunicorn also listens on that Unix socket, which the
runtime's router uses: a connection per request costs both sides less there than over loopback TCP.

gunicorn 25.1 and later open a control socket by default (``~/.gunicorn/gunicorn.ctl`` or under
``$XDG_RUNTIME_DIR``: worker counts, reloads, shutdown for whoever can open it). The runtime manages
its replicas itself, so a replica runs without one wherever the environment's gunicorn has the switch.
"""

import ctypes
import os
import signal
import sys

import gunicorn.app.wsgiapp
import gunicorn.config
from azureml_inference_server_http import amlserver

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _has_setting(name):
    return any(setting.name == name for setting in gunicorn.config.KNOWN_SETTINGS)


class _Replica(gunicorn.app.wsgiapp.WSGIApplication):
    """azmlinfsrv's gunicorn application with the runtime's arguments: it reads them from sys.argv when built.
    The umask makes the Unix socket owner-only (gunicorn applies it to the sockets it creates, nothing else)."""

    def __init__(self, *args, **kwargs):
        if os.environ.get("DEPLOYFLOW_REPLICA_SOCKET"):
            sys.argv[1:1] = ["-b", "unix:" + os.environ["DEPLOYFLOW_REPLICA_SOCKET"], "-m", "0o177"]
        if _has_setting("control_socket_disable"):
            sys.argv[1:1] = ["--no-control-socket"]
        super().__init__(*args, **kwargs)


amlserver.DEFAULT_HOST = os.environ.get("DEPLOYFLOW_REPLICA_HOST", "127.0.0.1")
gunicorn.app.wsgiapp.WSGIApplication = _Replica
os.register_at_fork(after_in_child=_die_with_parent)

if __name__ == "__main__":
    amlserver.run()
