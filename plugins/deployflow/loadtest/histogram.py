"""Latency histograms that merge exactly across processes and Airflow mapped tasks.

Built on HdrHistogram (`hdrhistogram` on PyPI): fixed buckets with 3 significant
digits, so adding two histograms gives exactly the histogram of all their values, and
the compressed encoding is a short string that fits in XCom or JSON.
"""

from __future__ import annotations

import binascii
import zlib
from collections import Counter
from dataclasses import asdict, dataclass

from hdrh.codec import HdrCookieException, HdrLengthException
from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour: anything slower is clamped, not dropped
SIGNIFICANT_DIGITS = 3
PERCENTILES = (50.0, 90.0, 95.0, 99.0)
_PENDING_MAX = 32_768  # values held back before they are folded into the buckets


@dataclass(frozen=True)
class Percentiles:
    """Summary of one histogram in milliseconds, as the reports and gates read it."""

    count: int
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


class LatencyHistogram:
    """Durations in whole microseconds, from 1 µs to one hour, 3 significant digits.

    Recording appends whole microseconds to a list, which is counted, clamped, rounded
    down to each value's bucket and folded into the HDR buckets in bulk before any read:
    the same counts, at a fraction of hdrh's per-value cost.
    """

    def __init__(self, _hist: HdrHistogram | None = None) -> None:
        self._buckets = _hist or HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
        self._pending: list[int] = []
        # hdrh's bucket arithmetic: a value v shares its bucket with every value that agrees
        # with it above bit ((v | mask).bit_length() - exact_bits).
        self._mask = self._buckets.sub_bucket_mask
        self._exact_bits = self._buckets.sub_bucket_half_count_magnitude + 1

    def record_us(self, value_us: float) -> None:
        """Record one duration; negative values count as 0 and huge ones as one hour."""
        pending = self._pending
        pending.append(int(value_us))
        if len(pending) >= _PENDING_MAX:
            self._fold()

    def record_many_us(self, values_us: list[int]) -> None:
        """Record whole microseconds in bulk (a hot loop's own buffer), clamped as `record_us` does."""
        self._pending.extend(values_us)
        if len(self._pending) >= _PENDING_MAX:
            self._fold()

    @property
    def _hist(self) -> HdrHistogram:
        """The HDR buckets with every recorded value in them."""
        if self._pending:
            self._fold()
        return self._buckets

    def _fold(self) -> None:
        counts = Counter(self._pending)
        self._pending.clear()
        mask, exact_bits = self._mask, self._exact_bits
        buckets: dict[int, int] = {}
        for value, count in counts.items():
            value = min(max(value, 0), HIGHEST_US)
            shift = (value | mask).bit_length() - exact_bits
            value = value >> shift << shift  # the lowest value of its bucket
            buckets[value] = buckets.get(value, 0) + count
        for value, count in buckets.items():  # record_value is hdrh's costly part: once a bucket
            self._buckets.record_value(value, count)

    def record_s(self, seconds: float) -> None:
        self.record_us(seconds * 1e6)

    def record_ms(self, milliseconds: float) -> None:
        self.record_us(milliseconds * 1e3)

    @property
    def count(self) -> int:
        return int(self._hist.get_total_count())

    def add(self, other: LatencyHistogram) -> None:
        """Add every value of `other` to this histogram, in place."""
        if other.count:
            self._hist.add(other._hist)

    def value_at_ms(self, percentile: float) -> float:
        """The value at `percentile` (0-100), in ms; 0 when empty."""
        if not self.count:
            return 0.0
        return self._hist.get_value_at_percentile(percentile) / 1e3

    def percentiles(self) -> Percentiles:
        """p50/p90/p95/p99/max and mean in ms, in one pass over the buckets."""
        if not self.count:
            return Percentiles(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        values = self._hist.get_percentile_to_value_dict(list(PERCENTILES))
        p50, p90, p95, p99 = (round(values[p] / 1e3, 3) for p in PERCENTILES)
        return Percentiles(
            count=self.count,
            mean=round(self._hist.get_mean_value() / 1e3, 3),
            p50=p50,
            p90=p90,
            p95=p95,
            p99=p99,
            max=round(self._hist.get_max_value() / 1e3, 3),
        )

    def encode(self) -> str:
        """Compressed, base64 HdrHistogram V2 encoding (readable by other HDR libraries)."""
        return self._hist.encode().decode("ascii")

    @classmethod
    def decode(cls, text: str) -> LatencyHistogram:
        try:
            hist = HdrHistogram.decode(text.encode("ascii"))
        except (
            TypeError,
            ValueError,
            binascii.Error,
            zlib.error,
            HdrCookieException,
            HdrLengthException,
        ) as exc:
            raise ValueError(f"not an encoded latency histogram: {text[:40]!r}") from exc
        layout = (hist.lowest_trackable_value, hist.highest_trackable_value, hist.significant_figures)
        if layout != (LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS):
            # Other bucket layouts would still add, but only approximately.
            raise ValueError(f"encoded histogram has another layout (lowest, highest, digits) = {layout}")
        return cls(hist)

    def __eq__(self, other: object) -> bool:
        """Equal when every bucket holds the same count."""
        if not isinstance(other, LatencyHistogram):
            return NotImplemented
        return self.count == other.count and bytes(self._hist.counts) == bytes(other._hist.counts)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"LatencyHistogram(count={self.count})"
