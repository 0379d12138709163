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
"""

import ctypes
import os
import signal
import sys

import gunicorn.app.wsgiapp
from azureml_inference_server_http import amlserver

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class _AlsoOnUnixSocket(gunicorn.app.wsgiapp.WSGIApplication):
    """azmlinfsrv's gunicorn application with one more bind: it reads its binds from sys.argv when built.
    The umask makes the socket owner-only (gunicorn applies it to the sockets it creates, nothing else)."""

    def __init__(self, *args, **kwargs):
        sys.argv[1:1] = ["-b", "unix:" + os.environ["DEPLOYFLOW_REPLICA_SOCKET"], "-m", "0o177"]
        super().__init__(*args, **kwargs)


amlserver.DEFAULT_HOST = os.environ.get("DEPLOYFLOW_REPLICA_HOST", "127.0.0.1")
if os.environ.get("DEPLOYFLOW_REPLICA_SOCKET"):
    gunicorn.app.wsgiapp.WSGIApplication = _AlsoOnUnixSocket
os.register_at_fork(after_in_child=_die_with_parent)

if __name__ == "__main__":
    amlserver.run()
