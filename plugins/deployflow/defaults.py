"""The library's default settings: package data, found the same way in an editable and an installed copy."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

_PACKAGE_DATA = files("deployflow") / "include"

#: the rollout plan a run starts from; a run's ``rollout_plan`` param overrides it key by key
ROLLOUT_PLAN_FILE = Path(str(_PACKAGE_DATA / "rollout" / "default_plan.json"))
#: the profile's candidates, SLO, prices and search settings when a run leaves them empty
PROFILING_DEFAULTS_FILE = Path(str(_PACKAGE_DATA / "profiling" / "defaults.json"))
