"""The scripts that run inside model environments import nothing a model environment lacks.

A model environment holds the model's own requirements and Azure ML's inference server, not
deployflow's dependencies: a child script that imported deployflow, pydantic or httpx would
work in the tests' venv and fail in every user's model environment.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from deployflow.runtime.child import CHILD_SCRIPTS

# What a model environment brings besides the standard library: the server Azure ML runs, and
# the user's own scoring script (imported as ``score`` by the probe, or by path by the workers).
ALLOWED_OUTSIDE_STDLIB = {"azureml_inference_server_http", "score"}
# The MLflow scoring script runs only in an MLflow model's environment, which the platform builds
# with mlflow-skinny, pandas and numpy beside the server (whose azureml.contrib it imports).
ALLOWED_FOR = {
    "mlflow_score.py": {"mlflow", "numpy", "pandas", "azureml"},
    # the MLflow batch script: the same environment; pyarrow only for parquet, when the model has it
    "mlflow_batch.py": {"mlflow", "numpy", "pandas", "pyarrow"},
    # the server's own WSGI server (a requirement of azureml-inference-server-http off Windows)
    "replica_main.py": {"gunicorn"},
}
SCRIPTS = sorted(p for p in CHILD_SCRIPTS.glob("*.py") if p.name != "__init__.py")


def imported_top_level_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))  # a relative import is never allowed
    return names


def test_every_child_script_is_checked():
    assert {p.name for p in SCRIPTS} >= {
        "replica_main.py", "batch_template.py", "batch_worker.py", "mlflow_score.py", "mlflow_batch.py",
    }  # fmt: skip


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_child_script_imports_only_the_standard_library_and_the_inference_server(script):
    foreign = (
        {name for name in imported_top_level_names(script) if name not in sys.stdlib_module_names}
        - ALLOWED_OUTSIDE_STDLIB
        - ALLOWED_FOR.get(script.name, set())
    )
    assert not foreign, f"{script.name} imports {sorted(foreign)}, which a model environment does not have"


def test_the_check_sees_a_foreign_import(tmp_path):
    script = tmp_path / "bad.py"
    script.write_text(
        "import json\nfrom deployflow.packages import ModelPackage\nimport httpx.client\nfrom . import x\n"
    )
    assert imported_top_level_names(script) - set(sys.stdlib_module_names) == {"deployflow", "httpx", "."}
