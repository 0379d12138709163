"""One batch-scoring worker: the scoring script's ``init()`` once, then ``run(mini_batch)`` per request.

Executed by path (``python -P``) in the model's own environment, so it imports nothing of
deployflow: stdlib only, plus pandas when the environment has it. The runtime talks to it
in JSON lines: the worker says ``ready`` (or ``init_failed``) once, then answers each
``{"mini_batch": [paths], "output": path}`` with ``done`` (rows written to ``output`` as
CSV, Azure ML's ``append_row``) or ``failed``. The script's own prints go to the log.
``ready`` also lists the library modules that importing the script and ``init()`` loaded,
so a warm template (batch_template.py) can import them once for the workers it forks.

Usage: batch_worker.py <scoring_script> <job_id>
"""

import csv
import importlib.util
import json
import os
import sys
import traceback

MAX_ERROR_CHARS = 4000


def load_script(path):
    """Import the scoring script by path, with its folder first on sys.path (as Azure ML does).

    Compiled from its source every time: a cached .pyc is trusted by its source's size and
    mtime in whole seconds, so an edit made within the same second could run the old code; and
    nothing is written into the package folder.
    """
    folder = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, folder)
    sys.dont_write_bytecode = True
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    with open(path, "rb") as f:
        code = compile(f.read(), path, "exec")
    exec(code, module.__dict__)
    return module


def write_rows(result, path):
    """Write what run() returned as rows: a DataFrame, or a list of strings / sequences / values."""
    if hasattr(result, "to_csv") and hasattr(result, "shape"):  # a pandas DataFrame
        result.to_csv(path, header=False, index=False)
        return int(result.shape[0])
    if not isinstance(result, (list, tuple)):
        raise TypeError(f"run() must return a list of rows or a pandas DataFrame, not {type(result).__name__}")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        for row in result:
            if isinstance(row, str):
                f.write(row.rstrip("\r\n") + "\n")
            elif isinstance(row, (list, tuple)):
                writer.writerow(row)
            else:
                writer.writerow([row])
    return len(result)


def error_text():
    return traceback.format_exc(limit=8)[-MAX_ERROR_CHARS:]


def library_modules(names, script):
    """The modules among ``names`` that come with the environment (stdlib, site-packages), not the package."""
    prefixes = tuple({os.path.realpath(p) + os.sep for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)})
    package = os.path.realpath(os.path.dirname(os.path.abspath(script))) + os.sep
    found = []
    for name in names:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if module is None or not path or name == "__main__":
            continue
        path = os.path.realpath(path)
        if path.startswith(prefixes) and not path.startswith(package):
            found.append(name)
    return found


def serve(script):
    """Load the script, run ``init()``, then answer mini-batches on stdin until it closes; the exit code."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the script's prints go to the worker's log, never into the protocol

    def send(message):
        protocol.write(json.dumps(message) + "\n")

    loaded_before = set(sys.modules)
    try:
        module = load_script(script)
        module.init()
    except BaseException:  # noqa: B036 - report whatever the script raised, then stop
        error = error_text()
        print(error, file=sys.stderr)
        send({"event": "init_failed", "error": error})
        return 1
    modules = library_modules([name for name in sys.modules if name not in loaded_before], script)
    send({"event": "ready", "modules": modules})
    for line in sys.stdin:
        request = json.loads(line)
        try:
            rows = write_rows(module.run(list(request["mini_batch"])), request["output"])
        except Exception:
            error = error_text()
            print(error, file=sys.stderr)
            send({"event": "failed", "error": error})
        else:
            send({"event": "done", "rows": rows})
    if hasattr(module, "shutdown"):
        module.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1]))
