"""A dependency-free progress line for long work: done/total, rate and ETA, at most once a second."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: float, desc: str, unit: str = "it", stream=None,
                 min_interval_s: float = 1.0):
        self.total = total
        self.desc = desc
        self.unit = unit
        self.stream = stream or sys.stderr
        self.min_interval_s = min_interval_s
        self.done = 0.0
        self.start = time.monotonic()
        self._last = None  # monotonic time of the last line; None = nothing printed yet
        self._finished = False

    def update(self, n: float = 1, extra: str = "") -> None:
        self.done += n
        now = time.monotonic()
        due = self._last is None or now - self._last >= self.min_interval_s
        if due or (self.done >= self.total and not self._finished):
            self._finished = self.done >= self.total
            self._last = now
            self.stream.write(self.line(now, extra) + "\n")
            self.stream.flush()

    def line(self, now: float | None = None, extra: str = "") -> str:
        elapsed = max((now or time.monotonic()) - self.start, 1e-9)
        rate = self.done / elapsed
        left = max(self.total - self.done, 0) / rate if rate > 0 else float("inf")
        eta = time.strftime("%H:%M:%S", time.gmtime(left)) if left != float("inf") else "?"
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return (f"{self.desc}: {self.done:.0f}/{self.total:.0f} {self.unit} ({pct:.0f}%) "
                f"{rate:.2f} {self.unit}/s, elapsed {elapsed:.0f}s, ETA {eta}"
                + (f" | {extra}" if extra else ""))
