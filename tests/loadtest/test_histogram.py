"""Histograms and results merge exactly and survive a JSON round trip (XCom)."""

from __future__ import annotations

import json

import pytest
from hdrh.histogram import HdrHistogram

from deployflow.loadtest import CLOSED_LOOP, GeneratorLag, LatencyHistogram, LoadResult, merge_results
from tests.loadtest.support import histogram_of, lognormal_ms, make_result


def test_merging_two_histograms_equals_recording_every_value_in_one() -> None:
    first, second = lognormal_ms(1, 5000), lognormal_ms(2, 3000)

    merged = histogram_of(first)
    merged.add(histogram_of(second))
    direct = histogram_of(first + second)

    assert merged == direct
    assert merged.encode() == direct.encode()
    assert merged.percentiles() == direct.percentiles()
    assert merged != histogram_of(first)  # equality does look at the buckets


def test_recording_in_bulk_fills_the_same_buckets_as_hdrh_value_by_value() -> None:
    values_ms = lognormal_ms(9, 20_000)  # thousands of distinct microsecond values
    reference = HdrHistogram(1, 3_600_000_000, 3)
    for value in values_ms:
        reference.record_value(int(value * 1e3))

    ours = histogram_of(values_ms)

    assert ours == LatencyHistogram.decode(reference.encode().decode("ascii"))
    assert ours.count == 20_000
    assert ours.percentiles() == LatencyHistogram(reference).percentiles()  # min, max and mean too


def test_percentiles_are_within_hdr_precision_of_the_exactlognormal_ms() -> None:
    values = sorted(lognormal_ms(3, 10_000))
    summary = histogram_of(values).percentiles()

    assert summary.count == 10_000
    for name, pct in (("p50", 50), ("p90", 90), ("p99", 99)):
        exact = values[int(len(values) * pct / 100) - 1]
        assert getattr(summary, name) == pytest.approx(exact, rel=2e-3, abs=2e-3)
    assert summary.max == pytest.approx(values[-1], rel=2e-3)


def test_encoded_histogram_is_compact_and_decodes_to_the_same_buckets() -> None:
    hist = histogram_of(lognormal_ms(4, 10_000))
    text = hist.encode()

    assert isinstance(text, str) and len(text) < 4000
    assert LatencyHistogram.decode(text) == hist
    assert LatencyHistogram.decode(LatencyHistogram().encode()).count == 0


def test_histograms_sent_as_text_by_mapped_tasks_merge_exactly() -> None:
    parts = [lognormal_ms(seed, 2000) for seed in (10, 11, 12)]
    texts = [json.dumps(histogram_of(part).encode()) for part in parts]  # through XCom

    merged = LatencyHistogram()
    for text in texts:
        merged.add(LatencyHistogram.decode(json.loads(text)))

    assert merged == histogram_of([v for part in parts for v in part])
    assert merged.count == 6000


def test_out_of_range_values_are_clamped_not_dropped() -> None:
    hist = LatencyHistogram()
    hist.record_ms(-5.0)
    hist.record_s(7200.0)

    assert hist.count == 2
    assert hist.percentiles().max == pytest.approx(3_600_000, rel=1e-3)  # one hour, in ms


def test_decoding_something_else_says_so() -> None:
    with pytest.raises(ValueError, match="not an encoded latency histogram"):
        LatencyHistogram.decode("definitely not a histogram")
    other_layout = HdrHistogram(1, 1000, 2)
    other_layout.record_value(5)
    with pytest.raises(ValueError, match="another layout"):
        LatencyHistogram.decode(other_layout.encode().decode("ascii"))


def test_load_results_merge_counts_rates_and_histograms() -> None:
    a_values, b_values = lognormal_ms(5, 900), lognormal_ms(6, 1100)
    a_lag = GeneratorLag(late_sends=2, max_lag_ms=9.0, slot_waits=1, late_dispatches=1)
    b_lag = GeneratorLag(late_sends=2, max_lag_ms=11.0, slot_waits=1)
    a = make_result(a_values, errors={"http_500": 3, "timeout": 1}, duration_s=10.0, requested_rate=90, lag=a_lag)
    b = make_result(b_values, errors={"http_500": 2}, duration_s=10.5, requested_rate=105, lag=b_lag)

    merged = a.merge([b])

    assert merged.ok == 2000
    assert merged.errors == {"http_500": 5, "timeout": 1}
    assert merged.requested_rate == pytest.approx(195)
    assert merged.duration_s == 10.5  # the parts ran side by side
    assert merged.achieved_rate == pytest.approx(2000 / 10.5)
    assert merged.latency == histogram_of(a_values + b_values)
    assert merged.generator_lag == GeneratorLag(late_sends=4, max_lag_ms=11.0, slot_waits=2, late_dispatches=1)
    assert merged.workers == 2


def test_load_result_round_trips_through_json() -> None:
    lag = GeneratorLag(late_sends=40, max_lag_ms=55.5, slot_waits=30, late_dispatches=10)
    original = make_result(lognormal_ms(7, 500), errors={"connect": 4}, duration_s=5.0, lag=lag)

    data = json.loads(json.dumps(original.to_dict()))
    restored = LoadResult.from_dict(data)

    assert data["latency_ms"]["p99"] == original.latency_ms.p99 > 0
    assert restored.latency == original.latency
    assert restored.server_time == original.server_time
    assert restored.overhead == original.overhead
    assert restored.generator_lag == lag
    assert restored.to_dict() == original.to_dict()


def test_merging_open_and_closed_loop_results_is_refused() -> None:
    closed = make_result([1.0], mode=CLOSED_LOOP)
    with pytest.raises(ValueError, match="open-loop and closed-loop"):
        merge_results([make_result([1.0]), closed])
