"""Candidates and the price table: what each configuration costs, and errors that say what to fix."""

from __future__ import annotations

import json
from typing import Any

import pytest

from deployflow.platform.specs import Resources
from deployflow.profiling import Candidate, PriceTable

PRICES = {
    "currency": "EUR",
    "instance_types": {"Standard_DS3_v2": 0.29, "Standard_NC6s_v3": 3.06},
    "per_cpu_core_hour": 0.04,
    "per_gb_hour": 0.005,
    "per_gpu_hour": 0.9,
}


def test_cpu_memory_and_gpu_are_priced_by_their_unit_rates() -> None:
    table = PriceTable.from_dict(PRICES)

    assert table.instance_price(Resources(cpu=2, memory_gb=4)) == pytest.approx(2 * 0.04 + 4 * 0.005)
    assert table.instance_price(Resources(cpu=4, memory_gb=16, gpu=1)) == pytest.approx(0.16 + 0.08 + 0.9)


def test_a_listed_instance_type_is_priced_flat_and_instances_multiply() -> None:
    table = PriceTable.from_dict(PRICES)
    candidate = Candidate("ds3", Resources(instance_type="Standard_DS3_v2"), instance_count=3)

    assert table.cost_per_hour(candidate) == pytest.approx(3 * 0.29)
    assert table.cost_per_hour(candidate, instances=5) == pytest.approx(5 * 0.29)
    assert table.currency == "EUR"


def test_a_price_table_round_trips_through_json() -> None:
    table = PriceTable.from_dict(PRICES)

    assert PriceTable.from_dict(json.loads(json.dumps(table.to_dict()))) == table


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"per_cpu_core_hour": 0.04, "per_gb_hours": 0.1}, r"unknown field\(s\) \['per_gb_hours'\]"),
        ({"instance_types": {"A": -1}}, "instance type 'A' must be a finite number >= 0"),
        ({"instance_types": {"A": "cheap"}}, "instance type 'A' must be a finite number"),
        ({"per_cpu_core_hour": True, "per_gb_hour": 0.1}, "per_cpu_core_hour must be a finite number"),
        ({"instance_types": ["A", 1]}, "instance_types must map a type name to a price"),
        ({}, "price table is empty"),
    ],
)
def test_a_bad_price_table_is_refused_with_what_to_fix(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PriceTable.from_dict(data)


@pytest.mark.parametrize(
    ("table", "resources", "message"),
    [
        ({"instance_types": {"A": 1.0}}, Resources(instance_type="B"), "no price for instance type 'B'"),
        ({"instance_types": {"A": 1.0}}, Resources(cpu=1, memory_gb=2), "needs per_cpu_core_hour and per_gb_hour"),
        ({"per_cpu_core_hour": 0.1, "per_gb_hour": 0.1}, Resources(cpu=1), "give a memory_gb request"),
        ({"per_cpu_core_hour": 0.1, "per_gb_hour": 0.1}, Resources(cpu=1, memory_gb=2, gpu=1), "needs per_gpu_hour"),
        ({"per_cpu_core_hour": 0.1, "per_gb_hour": 0.1}, Resources(), "no cpu request and no instance type"),
    ],
)
def test_a_configuration_the_table_cannot_price_is_an_error_not_free(
    table: dict[str, Any], resources: Resources, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        PriceTable.from_dict(table).instance_price(resources)


def test_a_candidate_is_read_from_json_with_defaults() -> None:
    candidate = Candidate.from_dict({"name": "small", "resources": {"cpu": 0.5, "memory_gb": 1}})

    assert candidate == Candidate("small", Resources(cpu=0.5, memory_gb=1))
    assert Candidate.from_dict(candidate.to_dict()) == candidate


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "x", "resources": {"cpu": 1}, "workers": 2}, r"unknown field\(s\) \['workers'\]"),
        ({"resources": {"cpu": 1}}, "needs a name and resources"),
        ({"name": "x", "resources": "big"}, "resources must be an object"),
        ({"name": "x", "resources": {"cpu": -1}}, "cpu must be a positive number"),
        ({"name": "x", "resources": {"cpu": 1}, "worker_count": 0}, "worker_count must be >= 1"),
        ({"name": "x", "resources": {"cpu": 1}, "instance_count": 0}, "instance_count must be >= 1"),
        ({"name": " ", "resources": {"cpu": 1}}, "non-empty name"),
    ],
)
def test_a_bad_candidate_is_refused_with_what_to_fix(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Candidate.from_dict(data)
