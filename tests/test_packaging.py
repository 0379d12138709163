"""deployflow installed from a wheel (not editable) finds its own defaults and child scripts.

The library's defaults are package data: a copy installed into site-packages, a Docker image
or a target folder has no repository around it, so nothing may be looked up through the
source tree's parent folders.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CHECK = """
import json, sys
from pathlib import Path
import deployflow
from deployflow.defaults import PROFILING_DEFAULTS_FILE
from deployflow.rollout import load_plan
from deployflow.runtime.child import CHILD_SCRIPTS
installed = Path(sys.argv[1]).resolve()
plan = load_plan()
print(json.dumps({
    "package": str(Path(deployflow.__file__).resolve()),
    "inside": Path(deployflow.__file__).resolve().is_relative_to(installed),
    "steps": [s.describe() if hasattr(s, "describe") else str(s) for s in plan.steps],
    "profiling_keys": sorted(json.loads(PROFILING_DEFAULTS_FILE.read_text())),
    "child_scripts": sorted(p.name for p in CHILD_SCRIPTS.glob("*.py")),
}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the project's packaging files (the checkout stays clean)."""
    source = tmp_path_factory.mktemp("source")
    shutil.copy(REPO / "pyproject.toml", source)
    shutil.copytree(REPO / "plugins", source / "plugins", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", out, source],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("deployflow-*.whl")
    return built


def test_the_wheel_carries_the_defaults_as_package_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "deployflow/include/rollout/default_plan.json" in names
    assert "deployflow/include/profiling/defaults.json" in names
    assert "deployflow/runtime/child/replica_main.py" in names
    assert "deployflow/azureml/spec/mfe-2025-12-01.json" in names  # the contract tests and the dry run read it


def test_an_installed_copy_finds_its_default_plan_and_profiling_defaults(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", target, wheel],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"  # no repository around: neither cwd nor parent folders help
    elsewhere.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", CHECK, str(target)],
        cwd=elsewhere,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["inside"], f"imported {found['package']}, not the installed copy in {target}"
    assert found["steps"], "the default rollout plan has no steps"
    assert {"candidates", "slo", "prices"} <= set(found["profiling_keys"])
    assert {"replica_main.py", "batch_template.py", "batch_worker.py"} <= set(found["child_scripts"])
