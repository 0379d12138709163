"""Start one replica: Azure ML's inference server (azmlinfsrv), bound to loopback.

Runs with the model environment's interpreter, so it imports nothing from deployflow.
azmlinfsrv binds 0.0.0.0 and has no host option; an unauthenticated scoring port must not
be open on every interface, so the bind address is set here before the server starts.
Arguments are azmlinfsrv's own (--entry_script, --model_dir, --port, --worker_count).

The server's gunicorn workers are forked from this process: each is given the same death
signal, so a replica killed outright (the runtime gone, SIGKILL) takes its workers with it
instead of leaving them orphaned.
"""

import ctypes
import os
import signal

from azureml_inference_server_http import amlserver

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


amlserver.DEFAULT_HOST = os.environ.get("DEPLOYFLOW_REPLICA_HOST", "127.0.0.1")
os.register_at_fork(after_in_child=_die_with_parent)

if __name__ == "__main__":
    amlserver.run()
