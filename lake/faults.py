"""Injected crash points, for the kill -9 tests (tests/faults/).

`crash_point("shards.before_commit")` does nothing unless the environment names that point in
FLYWHEEL_CRASH_AT ("name", or "name@N" for its N-th pass): then the process kills itself with
SIGKILL on the spot, as `kill -9` or the OOM killer would, with no cleanup, no `finally`, no
flush. The tests run a real stage in a subprocess with the variable set and check that a re-run
converges to the clean state.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "FLYWHEEL_CRASH_AT"
_passes: Counter[str] = Counter()


def crash_point(name: str) -> None:
    want = os.environ.get(ENV)
    if not want or not want.startswith(name):
        return
    point, _, nth = want.partition("@")
    if point != name:
        return
    _passes[name] += 1
    if _passes[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
