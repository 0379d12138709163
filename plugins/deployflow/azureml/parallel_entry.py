"""deployflow's entry script for an Azure ML parallel step: the package's batch script, one bad file at a time.

Copied beside the package's files into the step's code folder (as ``deployflow_parallel_entry.py``)
and run by the parallel step's driver on each AmlCompute node; standard library only. It loads the
package's own script (``--deployflow_script``) and calls its ``init()`` and ``run(mini_batch)``.
When a mini-batch fails on its data (a row that cannot be parsed: ``ValueError``, ``LookupError``,
``TypeError``, ``UnicodeError``, ``csv.Error``), its files are scored one by one: the rows of the
good ones are returned, and each file that fails alone is recorded — ``<name>.error.json`` under
the ``--deployflow_failed`` output folder, with the file's name relative to the input and the
error — instead of failing the mini-batch, so the parallel step goes on with the rest and the
DAG quarantines the recorded files; an empty (0-byte) file is recorded as ``<name>.skipped.json``
and not handed to the script. Any other error (the model missing, a full disk, the node
going away) is raised: the parallel step retries the mini-batch and counts it against its
``error_threshold``, as it does for any script.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType

#: errors a file's content causes; anything else is the script's, the model's or the node's
DATA_ERRORS = (ValueError, LookupError, TypeError, UnicodeError, csv.Error)
#: the reports' names: <file name relative to the input><suffix>, read back by the backend
FAILED_SUFFIX = ".error.json"
SKIPPED_SUFFIX = ".skipped.json"
EMPTY_FILE = "empty file (0 bytes): nothing to score"

_script: ModuleType | None = None
_failed_dir: Path | None = None
_input_dir: Path | None = None


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--deployflow_script", required=True)
    parser.add_argument("--deployflow_failed", required=True)
    parser.add_argument("--deployflow_input", default=None)
    parser.add_argument("--model_dir", default=None)
    known, _ = parser.parse_known_args()
    return known


def init() -> None:
    """Load the package's script and run its ``init()``; the model's folder also as AZUREML_MODEL_DIR."""
    global _script, _failed_dir, _input_dir
    arguments = _arguments()
    if arguments.model_dir:  # what the local runtime sets; a parallel step only passes --model_dir
        os.environ.setdefault("AZUREML_MODEL_DIR", arguments.model_dir)
    path = Path(__file__).resolve().with_name(arguments.deployflow_script)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"deployflow: cannot load the batch script {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    _script = module
    _failed_dir = Path(arguments.deployflow_failed)
    _input_dir = Path(arguments.deployflow_input) if arguments.deployflow_input else None
    if hasattr(module, "init"):
        module.init()


def run(mini_batch: list[str]) -> object:
    """The script's rows for the mini-batch; a file that fails on its data alone is recorded, not raised,
    and an empty (0-byte) file is recorded as skipped without being handed to the script."""
    assert _script is not None, "init() was not called"
    files = []
    for path in map(str, mini_batch):
        if os.path.getsize(path) == 0:
            _write_report(path, SKIPPED_SUFFIX, {"file": relative_name(path), "reason": EMPTY_FILE})
        else:
            files.append(path)
    if not files:
        return []
    try:
        return _script.run(files)  # a list or a pandas DataFrame, handed to the step as the script gave it
    except DATA_ERRORS:
        if len(files) == 1:
            _record(files[0], sys.exc_info()[1])
            return []
    parts = []
    for path in files:
        try:
            parts.append(_script.run([path]))
        except DATA_ERRORS as error:
            _record(path, error)
    return _joined(parts)


def _joined(parts: list) -> object:
    """The files' results as one, of the kind the script returns: a list, or a DataFrame."""
    if all(isinstance(part, (list, tuple)) for part in parts):
        return [row for part in parts for row in part]
    import pandas  # a script that returns DataFrames has pandas

    return pandas.concat([part if isinstance(part, pandas.DataFrame) else pandas.DataFrame(part) for part in parts])


def relative_name(path: str) -> str:
    """The file's name relative to the job's input folder (how the DAG's manifest names it)."""
    if _input_dir is not None:
        try:
            return Path(path).resolve().relative_to(_input_dir.resolve()).as_posix()
        except ValueError:
            pass
    return Path(path).name


def _record(path: str, error: BaseException | None) -> None:
    name = relative_name(path)
    last = traceback.format_exception_only(type(error), error)[-1].strip() if error else "failed"
    _write_report(
        path, FAILED_SUFFIX, {"file": name, "error": last, "traceback": traceback.format_exc(limit=8)[-4000:]}
    )
    print(f"deployflow: {name} failed to score and is recorded for quarantine: {last}", file=sys.stderr)


def _write_report(path: str, suffix: str, report: dict) -> None:
    assert _failed_dir is not None
    target = _failed_dir / f"{relative_name(path)}{suffix}"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(partial, target)  # a report is whole or absent
