"""The trigger form refuses malformed objects before any task runs, as Airflow's API validates a trigger.

The DAG goes through Airflow's own serialisation (what the API server holds), and each
conf is checked by ``create_dagrun``'s own validation: ``params.deep_merge(conf).validate()``.
"""

from __future__ import annotations

import json

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.exceptions import ParamValidationError
from airflow.serialization.serialized_objects import DagSerialization

from deployflow.defaults import PROFILING_DEFAULTS_FILE, ROLLOUT_PLAN_FILE
from deployflow.profiling import Candidate
from deployflow.rollout.plan import RolloutPlan, RolloutPlanError
from tests.conftest import REPO


@pytest.fixture(scope="module")
def params():
    dag = DagBag(str(REPO / "dags")).get_dag("realtime_deployment")
    return DagSerialization.from_dict(DagSerialization.to_dict(dag)).params


def test_the_defaults_are_valid(params) -> None:
    params.deep_merge({}).validate()


def test_documented_values_are_accepted(params) -> None:
    profiling = json.loads(PROFILING_DEFAULTS_FILE.read_text())
    plan = json.loads(ROLLOUT_PLAN_FILE.read_text())
    params.deep_merge({
        "candidates": profiling["candidates"],
        "slo": profiling["slo"],
        "rollout_plan": plan,
        "profile_settings": {"step_duration_s": 5, "max_steps": 4},
        "smoke_checks": {"malformed_request_4xx": "fail", "schema_examples": "off"},
        "stress": {"rate": 20, "duration_s": 10, "resources": {"instance_type": "Standard_F4s_v2"}},
        "test_resources": {"cpu": 1, "memory_gb": 2, "gpu": 0},
    }).validate()  # fmt: skip
    params.deep_merge({"rollout_plan": {"steps": [{"type": "traffic", "percent": 100}]}}).validate()
    params.deep_merge({"rollout_plan": {"gates": {"max_error_rate": 0.05}}}).validate()


BAD = [
    ("candidates", [{"name": "x", "resource": {"cpu": 1}}], "'resource' was unexpected"),
    ("candidates", [{"name": "x"}], "'resources' is a required property"),
    ("candidates", [{"name": "x", "resources": {"cpu": "two"}}], "'two'"),
    ("candidates", {"name": "x"}, "is not of type 'null', 'array'"),
    ("stress", {"rate": 0, "duration_s": 10, "resources": {}}, "less than or equal to the minimum"),
    ("stress", {"rate": 10, "resources": {}}, "'duration_s' is a required property"),
    ("slo", {"percentile": 99}, "'latency_ms' is a required property"),
    ("slo", {"latency_ms": 100, "p99": 1}, "'p99' was unexpected"),
    ("test_resources", {"cpus": 1}, "'cpus' was unexpected"),
    ("rollout_plan", {"step": ["traffic 100%"]}, "'step' was unexpected"),
    ("rollout_plan", {"steps": "traffic 100%"}, "is not of type 'array'"),
    ("rollout_plan", {"steps": ["shift 10%"]}, "'shift 10%'"),
    ("rollout_plan", {"gates": {"max_error": 0.1}}, "'max_error' was unexpected"),
    ("rollout_plan", {"on_inconclusive": "panic"}, "'panic' is not one of"),
    ("profile_settings", {"duration": 5}, "'duration' was unexpected"),
    ("smoke_checks", {"sample_answers": "error"}, "'error' is not one of"),
    ("smoke_checks", {"sample_answer": "fail"}, "'sample_answer' was unexpected"),
    ("approval_timeout_minutes", 0, "less than or equal to the minimum"),
    ("approval_timeout_minutes", "a day", "is not of type 'number'"),
]


@pytest.mark.parametrize(("param", "value", "message"), BAD, ids=[f"{p}-{i}" for i, (p, _, _) in enumerate(BAD)])
def test_a_malformed_object_is_refused_naming_the_param(params, param: str, value: object, message: str) -> None:
    with pytest.raises(ParamValidationError) as caught:
        params.deep_merge({param: value}).validate()
    assert f"Invalid input for param {param}" in str(caught.value)
    assert message in str(caught.value)


def test_what_the_form_refuses_the_parsers_refuse_too() -> None:
    """The form is derived from the parsers' dataclasses: both reject the same misnamed fields."""
    with pytest.raises(ValueError, match="unknown field"):
        Candidate.from_dict({"name": "x", "resource": {"cpu": 1}})
    with pytest.raises(RolloutPlanError, match="unknown key"):
        RolloutPlan.from_dict({"step": ["traffic 100%"]})
