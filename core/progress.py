"""Progress through a log: a long stage reports `progress <what> <done>/<total>` lines, throttled, through
whatever log it is given (Dagster's run log, print); `flywheel` reads them back from a run's output and
draws them as bars with an ETA. One line format, so a run seen in the UI reads the same as in a terminal."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

PROGRESS_RE = re.compile(r"\bprogress (?P<what>[\w.:-]+) (?P<done>\d+)/(?P<total>\d+)\b")


def progress_line(what: str, done: int, total: int) -> str:
    return f"progress {what} {done}/{total}"


def parse_progress(line: str) -> tuple[str, int, int] | None:
    """(what, done, total) of a progress line anywhere in `line` (Dagster prefixes its own fields), else None."""
    m = PROGRESS_RE.search(line)
    return (m["what"], int(m["done"]), int(m["total"])) if m else None


@dataclass
class Progress:
    """Calls `log(progress_line(...))` at most every `every_s` seconds, and always for the last item: a run
    log of thousands of steps stays readable while a terminal still gets a live bar."""

    log: Callable[[str], None]
    what: str
    total: int
    every_s: float = 2.0
    done: int = 0
    _last: float = field(default=float("-inf"), repr=False)

    def update(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + n)
        now = time.monotonic()
        if self.done >= self.total or now - self._last >= self.every_s:
            self._last = now
            self.log(progress_line(self.what, self.done, self.total))
