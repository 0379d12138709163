"""Where stage reports (stress tests, profiles, rollouts) are written: files whose paths go to XCom."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

REPORTS_DIR_VARIABLE = "DEPLOYFLOW_REPORTS_DIR"


def reports_dir() -> Path:
    """$DEPLOYFLOW_REPORTS_DIR, else $AIRFLOW_HOME/deployflow-reports, else ~/deployflow-reports."""
    configured = os.environ.get(REPORTS_DIR_VARIABLE)
    if configured:
        return Path(configured)
    home = os.environ.get("AIRFLOW_HOME")
    return Path(home) / "deployflow-reports" if home else Path.home() / "deployflow-reports"


def report_path(base: str | Path | None, *parts: str, suffix: str) -> Path:
    """A file under ``base`` (default: reports_dir()), one safe path segment per part."""
    safe = [re.sub(r"[^A-Za-z0-9._-]+", "_", part).strip("_") or "_" for part in parts]
    return Path(base or reports_dir()).joinpath(*safe).with_suffix(suffix)


def write_atomically(path: Path, text: str) -> Path:
    """Write the whole file or nothing: readers never see half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.replace(path)
    return path


def write_json(path: Path, document: Any) -> Path:
    return write_atomically(path, json.dumps(document, indent=2, sort_keys=False) + "\n")
