"""Model environments are built by uv when there is one, by venv + pip otherwise; both say what to fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deployflow.runtime.environments import EnvironmentBuildError, EnvironmentCache, find_uv

UV = find_uv()
INSTALLERS = [pytest.param("", id="pip"), pytest.param(UV, id="uv", marks=pytest.mark.skipif(not UV, reason="no uv"))]


@pytest.mark.parametrize("uv", INSTALLERS)
def test_an_environment_is_built_once_and_runs_the_base_python(tmp_path: Path, uv: str) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# nothing beyond the standard library\n")
    cache = EnvironmentCache(tmp_path / "envs", uv=uv)
    python = cache.ensure(requirements)
    script = "import sys; print(sys.version_info[:2])"
    version = subprocess.run([str(python), "-c", script], capture_output=True, text=True)
    assert version.stdout.strip() == str(sys.version_info[:2])
    assert python.is_relative_to(tmp_path / "envs"), "the model gets an interpreter of its own"
    stamp = (python.parents[1] / ".deployflow-ready").stat().st_mtime_ns
    assert cache.ensure(requirements) == python
    assert (python.parents[1] / ".deployflow-ready").stat().st_mtime_ns == stamp, "a ready environment was rebuilt"


@pytest.mark.parametrize("uv", INSTALLERS)
def test_a_requirement_that_cannot_install_names_the_file_and_leaves_no_half_built_env(tmp_path: Path, uv: str) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("this-package-does-not-exist-deployflow==0.0.1\n")
    cache = EnvironmentCache(tmp_path / "envs", uv=uv)
    with pytest.raises(EnvironmentBuildError, match="fix the requirements") as caught:
        cache.ensure(requirements)
    assert str(requirements) in str(caught.value)
    assert "this-package-does-not-exist-deployflow" in str(caught.value), "the installer's own words are kept"
    assert [p.name for p in (tmp_path / "envs").iterdir() if p.is_dir()] == []


def test_uv_is_used_when_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_missing = tmp_path / "no-uv-here"
    monkeypatch.setenv("DEPLOYFLOW_UV", str(fake_missing))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_uv() is None, "a configured uv that does not exist is not used"
    if UV:
        monkeypatch.setenv("DEPLOYFLOW_UV", UV)
        assert find_uv() == UV


def test_deployflow_installer_pip_builds_model_environments_with_pip_even_with_uv_at_hand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for the project's own venv: a machine whose index settings are pip's (uv reads none of them)."""
    uv = tmp_path / "uv"
    uv.write_text("#!/bin/sh\nexit 1\n")
    uv.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("DEPLOYFLOW_UV", str(uv))
    assert find_uv() == str(uv)
    monkeypatch.setenv("DEPLOYFLOW_INSTALLER", "pip")
    assert find_uv() is None
    assert EnvironmentCache(tmp_path / "envs").uv is None
