"""Users' traffic on an endpoint, as a test or a bench needs it: not the package's sample alone.

Open loop at ``rate`` requests/s from a thread; 30 % of the requests are single-row requests
(the package's sample has three rows), so a model that fails on a class of real inputs is seen
failing by the traffic users send. Every answer's wall-clock time and status is kept.
"""

from __future__ import annotations

import json
import threading
import time

import httpx

from tests.runtime.support import SAMPLE_MODEL


class UsersTraffic:
    def __init__(self, uri: str, key: str, rate: float, seconds: float | None = None) -> None:
        three = json.loads((SAMPLE_MODEL / "sample-request.json").read_text())
        self.bodies = [three] * 7 + [{"data": three["data"][:1]}] * 3
        self.uri, self.headers, self.rate, self.seconds = uri, {"Authorization": f"Bearer {key}"}, rate, seconds
        self.answers: list[tuple[float, int]] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        count = None if self.seconds is None else int(self.rate * self.seconds)
        with httpx.Client(timeout=10) as http:
            start, index = time.monotonic(), 0
            while not self._stopped.is_set() and (count is None or index < count):
                time.sleep(max(0.0, start + index / self.rate - time.monotonic()))
                try:
                    status = http.post(self.uri, json=self.bodies[index % 10], headers=self.headers).status_code
                except httpx.HTTPError:
                    status = 0  # no answer
                self.answers.append((time.time(), status))
                index += 1

    def failures_between(self, start: float, end: float) -> list[float]:
        """When users' requests failed (5xx, or no answer) between two wall-clock times."""
        return [t for t, status in self.answers if start <= t <= end and (status >= 500 or status == 0)]

    def wait(self) -> list[tuple[float, int]]:
        self._thread.join()
        return self.answers

    def stop(self) -> list[tuple[float, int]]:
        self._stopped.set()
        return self.wait()
