"""A progress line for long evaluations: images done out of the total, images per second, the time left.

An FID over 50,000 samples takes minutes on a CPU; without a sign of life it looks hung. This prints one line
to stderr every ``interval`` seconds and at each tenth of the way (so a notebook or a log file gets a dozen
lines, not thousands), then a final line with the total time. No dependency, no terminal tricks: it reads
the same in a terminal, a notebook and a log file.
"""
from __future__ import annotations

import sys
import time

#: ``progress=None`` means on from this many images: a 5,000-image FID takes about a minute on a laptop CPU.
MIN_TOTAL = 5000


def format_seconds(seconds: float) -> str:
    s = int(round(max(0.0, seconds)))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
    """``update(k)`` after each batch of ``k`` images; ``close()`` (or leaving a ``with`` block) prints the final
    line. ``enabled=None`` turns it on when ``total >= MIN_TOTAL``; a disabled one prints nothing.

    Lines look like ``generated images: 1280/50000 (2%) | 85.3 img/s | ETA 9m32s`` and, at the end,
    ``generated images: 50000/50000 (100%) | 85.1 img/s | 9m47s in all``.
    """

    def __init__(self, total: int | None, desc: str = "images", enabled: bool | None = None, stream=None,
                 interval: float = 2.0, clock=time.monotonic):
        self.total = None if total is None else int(total)
        self.enabled = (self.total is not None and self.total >= MIN_TOTAL) if enabled is None else bool(enabled)
        self.desc, self.stream, self.interval, self.clock = desc, stream, float(interval), clock
        self.done = 0
        self._start = self._last = clock()
        self._next_tenth = 1
        self._closed = False

    def _line(self, now: float, final: bool = False) -> str:
        elapsed = now - self._start
        rate = self.done / elapsed if elapsed > 0 else None
        speed = f"{rate:.1f} img/s" if rate else "? img/s"
        if self.total is None:
            head = f"{self.desc}: {self.done}"
        else:
            head = f"{self.desc}: {self.done}/{self.total} ({100 * self.done // max(self.total, 1)}%)"
        if final:
            tail = f"{format_seconds(elapsed)} in all"
        elif self.total is None:
            tail = f"{format_seconds(elapsed)} so far"
        else:
            tail = f"ETA {format_seconds((self.total - self.done) / rate)}" if rate else "ETA ?"
        return f"{head} | {speed} | {tail}"

    def _print(self, text: str) -> None:
        stream = self.stream if self.stream is not None else sys.stderr  # looked up late: pytest swaps it
        print(text, file=stream, flush=True)

    def update(self, k: int) -> None:
        self.done += int(k)
        if not self.enabled or self._closed or (self.total is not None and self.done >= self.total):
            return  # the last step is reported by close()
        now = self.clock()
        tenth = self.done * 10 // self.total if self.total else 0
        if now - self._last >= self.interval or (self.total and tenth >= self._next_tenth):
            self._print(self._line(now))
            self._last = now
            self._next_tenth = tenth + 1

    def close(self) -> None:
        if self.enabled and not self._closed:
            self._print(self._line(self.clock(), final=True))
        self._closed = True

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # the traceback says what happened; no "done" line
            self._closed = True
