"""A warm template for batch workers: imports a model environment's libraries once, then forks workers.

Starting a worker costs a Python start plus the imports of the scoring script and its
``init()`` (scikit-learn alone takes ~0.7 s); a job of a few seconds spends a third of its
time there. This process, run by the runtime in the model's environment with the workers'
exact environment variables, imports the library modules earlier workers reported loading,
and forks each new worker from that state. The child then imports the scoring script and
calls ``init()`` itself, as a fresh process would: only library imports are shared, never
the script's own state. It is the local counterpart of a compute cluster's node that stays
warm between jobs.

Executed by path (``python -P``), stdlib only. It talks to the runtime over a Unix
SOCK_SEQPACKET socket (inherited fd, one JSON message per packet):

* runtime → template: ``{"op": "preload", "modules": [...]}``, answered by ``preloaded``
  (with ``threads``, the OS threads now running: a template with more than one must not fork);
  ``{"op": "fork", "script", "job_id", "cwd"}`` with the worker's stdin, stdout and stderr as
  attached fds, answered by ``forked`` (``pid``) or ``fork_failed``.
* template → runtime, at any time: ``{"event": "exited", "pid", "code"}`` for a reaped worker
  (a negative code is the signal that ended it, as in ``subprocess``).

A worker starts its own session (killed as a group) and dies with the template, which dies
with the runtime. When the runtime closes the socket, the template kills what it forked and exits.

Usage: batch_template.py <batch_worker.py> <socket fd>
"""

import ctypes
import importlib
import importlib.util
import json
import os
import select
import signal
import socket
import sys
import traceback

PR_SET_PDEATHSIG = 1
MAX_MESSAGE = 1 << 20
WORKER_MARKER_ENV = "DEPLOYFLOW_BATCH_JOB"

_libc = ctypes.CDLL(None, use_errno=True)


def load_worker(path):
    """batch_worker.py by path, under a name no scoring script will use."""
    spec = importlib.util.spec_from_file_location("_deployflow_batch_worker", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def os_threads():
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def preload(names):
    """Import each module; one that fails to import is skipped (its worker will import it itself)."""
    imported = failed = 0
    for name in names:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
            imported += 1
        except Exception:
            failed += 1
    return {"event": "preloaded", "imported": imported, "failed": failed, "threads": os_threads()}


def reseed_in_child():
    """Forked workers would share the template's random state: give each its own, from the OS."""
    numpy = sys.modules.get("numpy")
    if numpy is not None and hasattr(numpy, "random"):
        numpy.random.seed()


def become_worker(worker, request, fds, template_pid, control, wake_fds):
    """In the forked child: take the given stdio, detach, die with the template, serve; never return."""
    code = 1
    try:
        os.setsid()
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != template_pid:
            os._exit(1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        control.close()
        for fd in wake_fds:
            os.close(fd)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.chdir(request["cwd"])
        os.environ[WORKER_MARKER_ENV] = request["job_id"]
        sys.argv = [worker.__file__, request["script"], request["job_id"]]
        reseed_in_child()
        code = worker.serve(request["script"])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: B036 - whatever happens, the child must not return into the template's loop
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def main():
    worker = load_worker(sys.argv[1])
    template_pid = os.getpid()
    control = socket.socket(fileno=int(sys.argv[2]))
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake select(); children are reaped below
    children = set()

    def send(message):
        control.send(json.dumps(message).encode())

    def reap():
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            children.discard(pid)
            send({"event": "exited", "pid": pid, "code": os.waitstatus_to_exitcode(status)})

    send({"event": "ready", "pid": os.getpid(), "threads": os_threads()})
    try:
        while True:
            readable, _, _ = select.select([control, wake_r], [], [])
            if wake_r in readable:
                os.read(wake_r, 4096)
                reap()
            if control not in readable:
                continue
            data, fds, _, _ = socket.recv_fds(control, MAX_MESSAGE, 3)
            if not data:
                return  # the runtime closed its end
            request = json.loads(data)
            if request["op"] == "preload":
                send(preload(request["modules"]))
                continue
            if len(fds) != 3:
                send({"event": "fork_failed", "error": f"a fork needs 3 fds (stdin, stdout, stderr), got {len(fds)}"})
                for fd in fds:
                    os.close(fd)
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            try:
                pid = os.fork()
            except OSError as e:
                send({"event": "fork_failed", "error": str(e)})
            else:
                if pid == 0:
                    become_worker(worker, request, fds, template_pid, control, (wake_r, wake_w))
                children.add(pid)
                send({"event": "forked", "pid": pid})
            finally:
                for fd in fds:
                    os.close(fd)
    finally:
        for pid in children:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass


if __name__ == "__main__":
    main()
