"""Helpers for batch-job tests: job documents, throwaway scoring packages, worker processes, expected values."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from deployflow.platform.batch import BatchInput, BatchJobSpec
from deployflow.platform.specs import ModelRef
from deployflow.runtime.environments import EnvironmentCache
from tests.runtime.support import ENV_CACHE, REPO, SAMPLE_MODEL

SAMPLE_DATA = REPO / "include" / "data" / "diabetes"
SAMPLE_FILES = sorted(p.name for p in SAMPLE_DATA.glob("*.csv"))

# Hangs in run() on any file whose name contains "hang"; otherwise one row per file.
HANGING_SCRIPT = """
import os
import time


def init():
    pass


def run(mini_batch):
    if any("hang" in os.path.basename(p) for p in mini_batch):
        time.sleep(3600)
    return [[os.path.basename(p), "ok"] for p in mini_batch]
"""


# Slow enough (per mini-batch) for the test to see its workers; the sample model's environment.
SLOW_SCRIPT = """
import os
import time


def init():
    pass


def run(mini_batch):
    time.sleep(1)
    return [[os.path.basename(p), "ok"] for p in mini_batch]
"""


def job_document(name: str, input_uri: str, output_uri: str, **settings: Any) -> dict[str, Any]:
    """A job as the platform contract writes it (BatchJobSpec.to_dict()), for the sample model."""
    files = tuple(settings.pop("files", ()))
    spec = BatchJobSpec(
        name=name,
        model=ModelRef("diabetes", "1"),
        package_path=str(settings.pop("package_path", SAMPLE_MODEL)),
        scoring_script=settings.pop("scoring_script", "batch_score.py"),
        input=BatchInput(input_uri, files=files),
        output_uri=output_uri,
        **settings,
    )
    return spec.to_dict()


def scoring_package(folder: Path, script: str, name: str = "score_batch.py") -> Path:
    """A package folder with the sample model's requirements (same cached environment) and ``script``."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(SAMPLE_MODEL / "requirements.txt", folder / "requirements.txt")
    (folder / name).write_text(textwrap.dedent(script))
    return folder


def input_folder(folder: Path, *, extra: dict[str, str] | None = None) -> Path:
    """The sample CSVs copied into ``folder``, plus ``extra`` files (name -> text)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in SAMPLE_FILES:
        shutil.copy(SAMPLE_DATA / name, folder / name)
    for name, text in (extra or {}).items():
        (folder / name).write_text(text)
    return folder


def processes_logging_to(matches: Callable[[str], bool]) -> list[psutil.Process]:
    """Live processes whose stderr is a file whose path ``matches``: how workers and templates are told apart."""
    found = []
    for process in psutil.process_iter(["status"]):
        if process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            stderr = os.readlink(f"/proc/{process.pid}/fd/2")
        except OSError:
            continue
        if matches(stderr):
            found.append(process)
    return found


def worker_processes(job_id: str) -> list[psutil.Process]:
    """Live batch workers of one job, spawned or forked from a template: their stderr is the job's worker log
    (a forked worker keeps its template's command line, so that cannot tell)."""
    return processes_logging_to(lambda path: f"/jobs/{job_id}/worker-" in path)


def template_processes(data_dir: Path) -> list[psutil.Process]:
    """Live worker templates of the runtime that keeps its data in ``data_dir`` (their stderr is their log)."""
    logs = str(data_dir / "logs" / "batch-templates")
    return processes_logging_to(lambda path: path.startswith(logs))


def expected_predictions(folder: Path) -> dict[tuple[str, int], float]:
    """The model's own predictions for every row of every CSV in ``folder``, computed in the model's env."""
    python = EnvironmentCache(ENV_CACHE, base_python=sys.executable).ensure(SAMPLE_MODEL / "requirements.txt")
    code = textwrap.dedent(
        """
        import json, pathlib, sys
        import joblib, numpy as np
        model = joblib.load(sys.argv[1])
        out = {}
        for path in sorted(pathlib.Path(sys.argv[2]).glob("*.csv")):
            rows = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
            out[path.name] = model.predict(rows).tolist()
        print(json.dumps(out))
        """
    )
    model = SAMPLE_MODEL / "model" / "model.joblib"
    result = subprocess.run([str(python), "-c", code, str(model), str(folder)], capture_output=True, check=True)
    per_file = json.loads(result.stdout)
    return {(name, i): value for name, values in per_file.items() for i, value in enumerate(values)}


def parse_predictions(text: str) -> dict[tuple[str, int], float]:
    rows = [line.split(",") for line in text.splitlines() if line]
    return {(name, int(row)): float(value) for name, row, value in rows}
