"""What `flywheel` draws in a terminal: progress bars (tqdm) fed by the progress lines a run logs
(core/progress.py), so training, evaluation and the twin show an ETA instead of minutes of silence."""

from __future__ import annotations

import subprocess
import sys
from collections import deque
from collections.abc import Sequence

from core.progress import parse_progress

# What each progress name means on a bar (a name not listed shows as itself).
LABELS = {"train": "training steps", "eval": "agent windows scored", "closed_loop": "closed-loop routes driven",
          "twin_chunks": "twin chunks written", "partitions": "partitions materialized"}


class Bars:
    """One tqdm bar per progress name, on stderr. Off a terminal the bars redraw rarely (every 30 s) so a
    CI log keeps a readable trace of a long run without thousands of carriage returns."""

    def __init__(self) -> None:
        self.bars: dict[str, object] = {}
        self.tty = sys.stderr.isatty()

    def update(self, what: str, done: int, total: int) -> None:
        from tqdm import tqdm

        bar = self.bars.get(what)
        if bar is None or bar.total != total or done < bar.n:  # type: ignore[attr-defined]  # a new run of the same stage
            if bar is not None:
                bar.close()  # type: ignore[attr-defined]
            bar = self.bars[what] = tqdm(total=total, desc=LABELS.get(what, what), unit="", dynamic_ncols=True,
                                         mininterval=0.2 if self.tty else 30.0, file=sys.stderr, leave=True)
        bar.update(done - bar.n)  # type: ignore[attr-defined]

    def write(self, line: str) -> None:
        from tqdm import tqdm

        tqdm.write(line, file=sys.stdout)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()  # type: ignore[attr-defined]
        self.bars.clear()


def run_streaming(cmd: Sequence[str], bars: Bars, *, echo: bool) -> tuple[int, str]:
    """Run `cmd`, turning its progress lines into bars; other lines are echoed (`echo`) or kept. Returns
    (exit code, the last lines of its output) for the error message of a failed run."""
    tail: deque[str] = deque(maxlen=300)
    with subprocess.Popen(list(cmd), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if (p := parse_progress(line)) is not None:
                bars.update(*p)
                continue
            tail.append(line)
            if echo:
                bars.write(line.rstrip("\n"))
        return proc.wait(), "".join(tail)
