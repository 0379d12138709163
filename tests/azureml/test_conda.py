"""requirements.txt → conda specification, and cores/GB → Kubernetes quantities."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployflow.azureml.conda import conda_environment, conda_environment_from_file, read_requirements
from deployflow.azureml.quantities import (
    format_cpu,
    format_memory,
    instance_type_name,
    parse_cpu,
    parse_memory,
)
from deployflow.platform import Resources

REPO = Path(__file__).resolve().parents[2]


def test_requirements_lose_comments_blanks_and_continuations() -> None:
    text = (
        "# pinned for the model\n"
        "\n"
        "azureml-inference-server-http==1.5.1\n"
        "scikit-learn==1.9.1   # trained with this\n"
        "numpy>=2.0,\\\n"
        "  <3 ; python_version >= '3.11'\n"
        "--extra-index-url https://pkgs.example.org/simple\n"
        "git+https://github.com/org/lib.git@v1#egg=lib\n"
    )
    assert read_requirements(text) == [
        "azureml-inference-server-http==1.5.1",
        "scikit-learn==1.9.1",
        "numpy>=2.0, <3 ; python_version >= '3.11'",
        "--extra-index-url https://pkgs.example.org/simple",
        "git+https://github.com/org/lib.git@v1#egg=lib",
    ]


@pytest.mark.parametrize("line", ["-r base.txt", "--requirement=base.txt", "-c constraints.txt", "-e ./lib"])
def test_requirements_that_point_at_other_files_are_refused(line: str) -> None:
    with pytest.raises(ValueError, match="refers to another file"):
        read_requirements(f"azureml-inference-server-http\n{line}\n", source="pkg/requirements.txt")


def test_conda_environment_installs_the_requirements_with_pip_on_python_311() -> None:
    env = conda_environment(["azureml-inference-server-http[extra]>=1.5", "joblib==1.6.0"])
    assert env == {
        "name": "deployflow-model",
        "channels": ["conda-forge"],
        "dependencies": [
            "python=3.11",
            "pip",
            {"pip": ["azureml-inference-server-http[extra]>=1.5", "joblib==1.6.0"]},
        ],
    }


@pytest.mark.parametrize("requirements", [["numpy"], ["azureml-inference-server-http-fork==1"]])
def test_conda_environment_needs_the_inference_server(requirements: list[str]) -> None:
    with pytest.raises(ValueError, match="must list azureml-inference-server-http"):
        conda_environment(requirements)


def test_the_sample_model_package_converts() -> None:
    env = conda_environment_from_file(REPO / "include/models/diabetes/requirements.txt")
    assert any(r.startswith("azureml-inference-server-http==") for r in env["dependencies"][-1]["pip"])


def test_an_unreadable_requirements_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read .*requirements.txt"):
        conda_environment_from_file(tmp_path / "requirements.txt")


@pytest.mark.parametrize(("cores", "text"), [(0.5, "500m"), (1, "1"), (1.25, "1250m"), (4.0, "4"), (0.1, "100m")])
def test_cpu_quantities(cores: float, text: str) -> None:
    assert format_cpu(cores) == text
    assert parse_cpu(text) == pytest.approx(cores)


@pytest.mark.parametrize(("gib", "text"), [(2, "2Gi"), (1.5, "1536Mi"), (0.5, "512Mi"), (16, "16Gi")])
def test_memory_quantities(gib: float, text: str) -> None:
    assert format_memory(gib) == text
    assert parse_memory(text) == pytest.approx(gib)


def test_memory_in_decimal_units_reads_as_gib() -> None:
    assert parse_memory("2G") == pytest.approx(2e9 / 2**30)
    with pytest.raises(ValueError, match="unknown unit"):
        parse_memory("2Gb")


def test_instance_type_names_are_stable_kubernetes_names() -> None:
    assert instance_type_name(Resources(cpu=0.5, memory_gb=2)) == "cpu500m-mem2gi"
    assert instance_type_name(Resources(cpu=4, memory_gb=1.5, gpu=1)) == "cpu4-mem1536mi-gpu1"
    with pytest.raises(ValueError, match="needs both cpu and memory_gb"):
        instance_type_name(Resources(cpu=1))
