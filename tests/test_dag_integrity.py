"""Every file in dags/ parses into DAGs the way Airflow 3's dag-processor will parse it.

The DagBag is built once for the module. AIRFLOW_HOME (set by tests/conftest.py) points at a
migrated metadata database; plugins/ is on sys.path through pytest's `pythonpath`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

REPO_ROOT = Path(__file__).resolve().parents[1]
DAGS_DIR = REPO_ROOT / "dags"

# Homes of operators, sensors and hooks in Airflow 2; Airflow 3 has them in providers and airflow.sdk.
AIRFLOW2_MODULE_PREFIXES = ("airflow.operators", "airflow.sensors", "airflow.hooks", "airflow.contrib")


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    # safe_mode=False parses every .py file, so a broken file is reported even if it never says "dag".
    return DagBag(dag_folder=DAGS_DIR, safe_mode=False)


def dag_files() -> list[Path]:
    return sorted(DAGS_DIR.rglob("*.py")) if DAGS_DIR.is_dir() else []


def _imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def forbidden_constructs(source: str, filename: str = "<dag>") -> list[str]:
    """`sys.path` manipulation and Airflow 2 idioms in a DAG file, as "file:line: what" strings."""
    tree = ast.parse(source, filename=filename)
    found = [
        f"{filename}:{lineno}: Airflow 2 import {module}"
        for lineno, module in _imported_modules(tree)
        if module.startswith(AIRFLOW2_MODULE_PREFIXES)
    ]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) == ("sys", "path"):
                found.append(f"{filename}:{node.lineno}: sys.path manipulation")
        if isinstance(node, ast.ImportFrom) and node.module == "sys":
            if any(alias.name == "path" for alias in node.names):
                found.append(f"{filename}:{node.lineno}: sys.path manipulation")
        if isinstance(node, ast.keyword) and node.arg == "schedule_interval":
            found.append(f"{filename}:{node.lineno}: schedule_interval (Airflow 3 uses schedule=)")
    return found


def test_dags_import_without_errors(dagbag: DagBag) -> None:
    errors = "\n\n".join(f"{path}:\n{error}" for path, error in sorted(dagbag.import_errors.items()))
    assert not dagbag.import_errors, f"DAG import errors:\n{errors}"


def test_dags_parse_without_warnings(dagbag: DagBag) -> None:
    warnings = [line for lines in dagbag.captured_warnings.values() for line in lines]
    assert not warnings, "warnings while parsing DAG files:\n" + "\n".join(warnings)


def test_at_least_one_dag_is_defined(dagbag: DagBag) -> None:
    assert dagbag.dags, f"no DAG found in {DAGS_DIR}"


def test_every_dag_is_documented_tagged_and_retried(dagbag: DagBag) -> None:
    problems = []
    for dag_id, dag in sorted(dagbag.dags.items()):
        if not dag.tags:
            problems.append(f"{dag_id}: no tags")
        if not (dag.doc_md or "").strip():
            problems.append(f"{dag_id}: no doc_md (use doc_md=__doc__)")
        retries = (dag.default_args or {}).get("retries")
        if not isinstance(retries, int) or retries < 1:
            problems.append(f"{dag_id}: default_args retries is {retries!r}, needs an int >= 1")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", dag_files(), ids=lambda path: path.name)
def test_dag_file_has_no_sys_path_hacks_or_airflow2_idioms(path: Path) -> None:
    found = forbidden_constructs(path.read_text(), filename=str(path.relative_to(DAGS_DIR)))
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import sys\nsys.path.append('/opt/include')\n", "sys.path manipulation"),
        ("from sys import path\npath.insert(0, 'x')\n", "sys.path manipulation"),
        ("from airflow.operators.python_operator import PythonOperator\n", "Airflow 2 import"),
        ("import airflow.operators.bash\n", "Airflow 2 import"),
        ("from airflow.sdk import DAG\nDAG('d', schedule_interval='@daily')\n", "schedule_interval"),
    ],
)
def test_forbidden_constructs_are_recognised(source: str, expected: str) -> None:
    found = forbidden_constructs(source)
    assert len(found) == 1 and expected in found[0], found


def test_airflow3_dag_file_is_not_flagged() -> None:
    source = (
        '"""Docs mention schedule_interval and sys.path only in prose."""\n'
        "from airflow.providers.standard.operators.python import PythonOperator\n"
        "from airflow.sdk import DAG\n"
        "# sys.path.append would be wrong here\n"
        "DAG('d', schedule='@daily')\n"
    )
    assert forbidden_constructs(source) == []
