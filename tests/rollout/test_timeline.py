"""The rollout timeline draws what the decision record says: windows, verdicts, shares, the end."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta

from deployflow.rollout.record import DecisionRecord, close_record
from deployflow.rollout.timeline import render_timeline_html, timeline_svg
from tests.rollout.records import bake_failure, completed, rolled_back_at_mirror

SVG = "{http://www.w3.org/2000/svg}"


def drawn(record: dict) -> ET.Element:
    return ET.fromstring(timeline_svg(record))  # well-formed XML, or this raises


def by_class(svg: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    return [e for e in svg.iter(f"{SVG}{tag}") if cls in (e.get("class") or "").split()]


def texts(svg: ET.Element, cls: str) -> list[str]:
    return ["".join(e.itertext()) for e in by_class(svg, "text", cls)]


def test_a_completed_rollout_has_one_band_per_window_coloured_by_verdict_and_a_completion_marker() -> None:
    svg = drawn(completed())

    bands = by_class(svg, "rect", "window")
    assert [b.get("data-verdict") for b in bands] == ["pass"] * 4
    assert texts(svg, "window-label") == ["step 1: mirror 20% 30s", "step 2: traffic 50% 30s", "step 3: traffic 100%",
                                          "bake"]  # fmt: skip
    assert texts(svg, "window-verdict") == ["pass · live", "pass · live+probe", "pass · live", "pass · live"]
    assert len(by_class(svg, "line", "finish")) == 1 and not by_class(svg, "line", "rollback")
    assert texts(svg, "marker-label") == ["completed at 120 s"]


def test_the_share_panel_steps_through_mirror_then_traffic_and_labels_each_line_at_its_end() -> None:
    svg = drawn(completed())

    (traffic,) = by_class(svg, "polyline", "traffic")
    (mirror,) = by_class(svg, "polyline", "mirror")
    ys = [float(p.split(",")[1]) for p in traffic.get("points").split()]
    assert len(set(ys)) == 3  # 0 %, 50 %, 100 %
    assert ys[-1] < ys[0]  # ends at 100 % (higher on the page than 0 %)
    mirror_ys = [float(p.split(",")[1]) for p in mirror.get("points").split()]
    assert mirror_ys[-1] == mirror_ys[0] and min(mirror_ys) < mirror_ys[0]  # up to 20 % and back to 0
    assert texts(svg, "share-label") == ["traffic to blue-2: 100%", "mirror to blue-2: 0%"]


def test_each_window_draws_error_rate_and_p99_for_new_and_old_with_direct_labels() -> None:
    svg = drawn(completed())

    assert len(by_class(svg, "line", "error_rate")) - len(by_class(svg, "line", "limit")) == 8  # new+old x 4
    assert len(by_class(svg, "line", "p99_ms")) == 8
    assert "0.2%" in texts(svg, "error_rate") and "14 ms" in texts(svg, "p99_ms")
    assert texts(svg, "series-label") == ["new: blue-2", "old: green-1", "limit 1%", "new: blue-2", "old: green-1"]


def test_a_rollback_at_the_mirror_step_shows_one_failed_probe_window_and_the_rollback_marker() -> None:
    svg = drawn(rolled_back_at_mirror())

    assert [b.get("data-verdict") for b in by_class(svg, "rect", "window")] == ["fail"]
    assert texts(svg, "window-verdict") == ["fail · probe"]
    assert len(by_class(svg, "line", "rollback")) == 1 and not by_class(svg, "line", "finish")
    assert texts(svg, "marker-label") == ["rolled back at 31 s"]
    assert "12%" in texts(svg, "error_rate")
    (traffic,) = by_class(svg, "polyline", "traffic")
    assert {p.split(",")[1] for p in traffic.get("points").split()} == {traffic.get("points").split()[0].split(",")[1]}
    assert texts(svg, "share-label")[0] == "traffic to blue-2: 0%"


def test_a_bake_failure_is_the_last_band_failed_after_passing_steps_and_rolls_traffic_back_to_zero() -> None:
    svg = drawn(bake_failure())

    assert [b.get("data-verdict") for b in by_class(svg, "rect", "window")] == ["pass", "pass", "fail"]
    assert texts(svg, "window-label")[-1] == "bake"
    assert texts(svg, "marker-label") == ["rolled back at 61 s"]
    assert "95 ms" in texts(svg, "p99_ms")
    assert texts(svg, "share-label")[0] == "traffic to blue-2: 0%"


def test_the_page_is_self_contained_with_a_headline_and_every_event_line() -> None:
    page = render_timeline_html(rolled_back_at_mirror())

    assert "<script" not in page and not re.search(r"(src|href)=", page)
    assert "Rollout of blue-2 on diabetes: rolled_back" in page
    assert "rolled back: error rate 12% over 1%" in page
    assert "replacing green-1" in page


def test_a_first_release_with_no_windows_still_renders_and_says_nothing_was_measured() -> None:
    record = {**completed(), "old": None, "windows": [], "outcome": "first_release"}

    svg = drawn(record)

    assert not by_class(svg, "rect", "window")
    assert "no gate window measured" in "".join(svg.itertext())
    assert "first release" in render_timeline_html(record)


def test_names_from_the_record_are_escaped() -> None:
    record = {**completed(), "endpoint": "<b>x</b>", "new": "a&b"}

    page = render_timeline_html(record)

    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    drawn(record)


def test_a_record_paused_at_an_approval_is_ended_by_the_rollback_another_task_did() -> None:
    record = DecisionRecord("diabetes", "green", "blue", "diabetes:2")
    record.event("traffic", "endpoint diabetes: traffic {blue: 90, green: 10}", traffic={"blue": 90, "green": 10})
    record.event("approval", "asked: Continue rolling out green?")
    document = record.to_dict()
    answered = (datetime.fromisoformat(document["started_at"]) + timedelta(seconds=30)).isoformat()

    close_record(document, [("approval", "answered: rejected (timed out)", None, answered),
                            ("rollback", "endpoint diabetes: traffic {blue: 100}", {"blue": 100}, None)],
                 "rolled_back")  # fmt: skip

    assert document["outcome"] == "rolled_back" and document["ended_at"]
    assert [e["kind"] for e in document["events"]] == ["traffic", "approval", "approval", "rollback"]
    assert document["events"][2]["t_s"] == 30.0, "the answer at the time it was given, on the record's clock"
    svg = drawn(document)
    assert len(by_class(svg, "line", "rollback")) == 1
    assert "rolled_back" in render_timeline_html(document)
