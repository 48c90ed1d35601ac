"""Small PNG figures for asset metadata (matplotlib, headless)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def _panels(n: int, width_in: float, height_in: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, n, figsize=(width_in * n, height_in), squeeze=False)
    return fig, axes[0]


def _png(fig: Any, title: str) -> bytes:
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def histograms_png(series: dict[str, np.ndarray], bins: int = 60, title: str = "") -> bytes:
    """One histogram per named series, side by side, as PNG bytes."""
    fig, axes = _panels(len(series), 4, 3)
    for ax, (name, values) in zip(axes, series.items(), strict=True):
        v = np.asarray(values, dtype=np.float64).ravel()
        ax.hist(v[np.isfinite(v)], bins=bins, color="#4477aa")
        ax.set_title(name, fontsize=9)
        ax.set_yscale("log")
    return _png(fig, title)


def curves_png(panels: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], title: str = "",
               log_y: tuple[str, ...] = ()) -> bytes:
    """One panel per name, each with named (x, y) lines (e.g. train/val loss by step), as PNG bytes."""
    fig, axes = _panels(len(panels), 4.5, 3.2)
    for ax, (name, lines) in zip(axes, panels.items(), strict=True):
        for label, (x, y) in lines.items():
            ax.plot(np.asarray(x), np.asarray(y), label=label, lw=1.2, marker="o" if len(x) < 30 else None, ms=3)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        if name in log_y:
            ax.set_yscale("log")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return _png(fig, title)
