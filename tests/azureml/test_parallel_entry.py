"""deployflow's entry script for the parallel step, run as the step's driver runs it: in a Python of its
own, from the code folder, ``init()`` once and ``run(mini_batch)`` with paths under the mounted input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deployflow.azureml.batch import ENTRY_SCRIPT, ENTRY_SOURCE
from deployflow.azureml.parallel_entry import EMPTY_FILE

# a batch script in the sample's manner (10 numbers a row, a bad value raises ValueError), stdlib only
SCRIPT = """
import csv, os

def init():
    global model_dir
    model_dir = os.environ["AZUREML_MODEL_DIR"]
    if os.path.exists(os.path.join(model_dir, "broken")):
        raise OSError("the model folder is unreadable")

def run(mini_batch):
    rows = []
    for path in mini_batch:
        if os.path.basename(path) == "disk-full.csv":
            raise OSError(28, "No space left on device")
        with open(path, newline="") as f:
            for i, row in enumerate(csv.reader(f)):
                total = sum(float(value) for value in row)
                rows.append(f"{os.path.basename(path)},{i},{total}")
    return rows
"""


@pytest.fixture
def step(tmp_path: Path) -> dict[str, Path]:
    code, data, model, failed = (tmp_path / name for name in ("code", "input", "model", "failed"))
    for folder in (code, data / "2026-11-01", model):
        folder.mkdir(parents=True)
    shutil.copyfile(ENTRY_SOURCE, code / ENTRY_SCRIPT)
    (code / "batch_score.py").write_text(SCRIPT)
    (data / "good.csv").write_text("1,2\n3,4\n")
    (data / "2026-11-01" / "bad.csv").write_text("1,2\nabc,4\n")
    (data / "later.csv").write_text("5,5\n")
    (data / "disk-full.csv").write_text("1,1\n")
    return {"code": code, "input": data, "model": model, "failed": failed}


def drive(step: dict[str, Path], *batches: list[str]) -> subprocess.CompletedProcess[str]:
    """init() once, then run() per mini-batch; prints each run's rows as a JSON line."""
    arguments = ["--model_dir", str(step["model"]), "--deployflow_script", "batch_score.py",
                 "--deployflow_failed", str(step["failed"]), "--deployflow_input", str(step["input"])]  # fmt: skip
    driver = (
        "import json, sys\n"
        f"sys.argv = ['driver'] + {arguments!r}\n"
        f"sys.path.insert(0, {str(step['code'])!r})\n"
        "import deployflow_parallel_entry as entry\n"
        "entry.init()\n"
        f"for batch in {[[str(step['input'] / name) for name in batch] for batch in batches]!r}:\n"
        "    print(json.dumps(entry.run(batch)), flush=True)\n"
    )
    return subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})  # fmt: skip


def reports(step: dict[str, Path]) -> dict[str, dict]:
    return {p.relative_to(step["failed"]).as_posix(): json.loads(p.read_text()) for p in step["failed"].rglob("*.json")}


def test_a_file_with_a_bad_row_is_recorded_and_the_rest_of_its_mini_batch_scored(step) -> None:
    done = drive(step, ["good.csv", "2026-11-01/bad.csv", "later.csv"], ["later.csv"])

    assert done.returncode == 0, done.stderr
    first, second = (json.loads(line) for line in done.stdout.splitlines())
    assert first == ["good.csv,0,3.0", "good.csv,1,7.0", "later.csv,0,10.0"]
    assert second == ["later.csv,0,10.0"], "the next mini-batch is scored as usual"
    (name, report), *others = reports(step).items()
    assert not others and name == "2026-11-01/bad.csv.error.json"
    assert report["file"] == "2026-11-01/bad.csv"
    assert report["error"] == "ValueError: could not convert string to float: 'abc'"
    assert "Traceback" in report["traceback"]
    assert "2026-11-01/bad.csv failed to score and is recorded for quarantine" in done.stderr
    assert not list(step["failed"].rglob("*.partial"))


def test_a_mini_batch_of_one_bad_file_is_recorded_not_raised(step) -> None:
    done = drive(step, ["2026-11-01/bad.csv"])

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    assert list(reports(step)) == ["2026-11-01/bad.csv.error.json"]


def test_an_error_that_is_not_the_datas_fails_the_mini_batch_for_the_step_to_retry(step) -> None:
    done = drive(step, ["good.csv", "disk-full.csv"])

    assert done.returncode != 0
    assert "OSError: [Errno 28] No space left on device" in done.stderr
    assert reports(step) == {}, "a full disk is not the file's fault: nothing is quarantined"


def test_init_runs_the_scripts_init_with_the_model_folder_and_its_failure_fails_init(step) -> None:
    (step["model"] / "broken").write_text("")
    done = drive(step, ["good.csv"])

    assert done.returncode != 0 and "OSError: the model folder is unreadable" in done.stderr


def test_an_empty_file_is_recorded_as_skipped_and_not_handed_to_the_script(step) -> None:
    (step["input"] / "empty.csv").write_bytes(b"")
    done = drive(step, ["empty.csv", "later.csv"], ["empty.csv"])

    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [["later.csv,0,10.0"], []]
    assert reports(step) == {"empty.csv.skipped.json": {"file": "empty.csv", "reason": EMPTY_FILE}}
