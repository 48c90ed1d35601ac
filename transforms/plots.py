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
    fig.savefig(buf, format="png", dpi=100)  # readable in the UI's metadata panel
    plt.close(fig)
    return buf.getvalue()


def histograms_png(series: dict[str, np.ndarray], bins: int = 60, title: str = "") -> bytes:
    """One histogram per named series, side by side, as PNG bytes."""
    from matplotlib.ticker import MaxNLocator

    fig, axes = _panels(len(series), 4.5, 3.2)
    for ax, (name, values) in zip(axes, series.items(), strict=True):
        v = np.asarray(values, dtype=np.float64).ravel()
        ax.hist(v[np.isfinite(v)], bins=bins, color="#4477aa")
        ax.set_title(name, fontsize=9)
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(5))  # long tick labels (1e-3 scales) overlapped at 60 bins
        ax.tick_params(labelsize=8)
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


POLICY_COLORS = ("#cc3311", "#0077bb", "#009988", "#ee7733", "#aa3377", "#555555")


def bev_png(panels: list[dict[str, Any]], title: str = "") -> bytes:
    """Bird's-eye views, one per window, in the ego frame at t0 (x forward drawn upwards, y left).

    Each panel: "title"; optional "lines" (road edges and lane lines, (N, 2) each), "stops" (stop
    lines, (2, 2) each) and "boxes" (other vehicles at t0, (4, 2) corners each); "ego" box (4, 2);
    "history" (N, 2); "truth" (N, 2); "plans" {name: (N, 2)}.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = 2 if any("image" in p for p in panels) else 1
    fig, grid = plt.subplots(rows, len(panels), figsize=(3.6 * len(panels), 5.6 + 2.2 * (rows - 1)), squeeze=False,
                             gridspec_kw={"height_ratios": [1, 2.6] if rows == 2 else [1]})
    axes = grid[-1]
    for cam, p in zip(grid[0] if rows == 2 else [], panels, strict=False):
        if "image" in p:
            cam.imshow(p["image"])
        cam.set_title(p.get("caption", ""), fontsize=9)
        cam.axis("off")
    for ax, p in zip(axes, panels, strict=True):

        def draw(xy: np.ndarray, ax: Any = ax, **kw: Any) -> None:
            xy = np.asarray(xy)
            ax.plot(-xy[:, 1], xy[:, 0], **kw)  # y left -> screen left

        for line in p.get("lines", []):
            draw(line, color="#999999", lw=0.8)
        for k, stop in enumerate(p.get("stops", [])):
            draw(stop, color="#cc0000", lw=2.0, label="stop line" if k == 0 else None)
        for k, box in enumerate(p.get("boxes", [])):
            draw(np.vstack([box, box[:1]]), color="#444444", lw=1.0, label="vehicle at t0" if k == 0 else None)
        if "ego" in p:
            draw(np.vstack([p["ego"], p["ego"][:1]]), color="#000000", lw=1.4, label="ego at t0")
        draw(p["history"], color="#777777", lw=2.0, ls=":", label="history")
        draw(p["truth"], color="#000000", lw=2.0, label="logged")
        for color, (name, xy) in zip(POLICY_COLORS, p["plans"].items(), strict=False):
            draw(xy, color=color, lw=1.3, label=name)
        # the view spans the road drawn (or the trajectories): far-away vehicles stay out of it
        pts = np.concatenate([np.asarray(a).reshape(-1, 2) for a in
                              (p.get("lines") or [p["history"], p["truth"], *p["plans"].values()])])
        pts = pts[np.isfinite(pts).all(1)]
        ax.set_xlim(-pts[:, 1].max() - 3, -pts[:, 1].min() + 3)
        ax.set_ylim(pts[:, 0].min() - 3, pts[:, 0].max() + 3)
        ax.set_title(p["title"], fontsize=9)
        ax.set_aspect("equal", adjustable="datalim")
        ax.grid(alpha=0.2)
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=7, loc="lower left")  # each panel: stop lines and vehicles appear only in some
    return _png(fig, title)


def contact_sheet_png(images: list[np.ndarray], captions: list[str], *, cols: int = 4, width: int = 320,
                      title: str = "") -> bytes:
    """Camera frames in a grid, each with its caption (a command, the clip and time) under it, as a PNG.

    Drawn with PIL at the frames' own scale (no axes, no resampling beyond `width`) so that the
    pictures stay sharp in the Dagster UI's metadata panel.
    """
    from PIL import Image, ImageDraw, ImageFont

    if not images or len(images) != len(captions):
        raise ValueError(f"need as many captions ({len(captions)}) as images ({len(images)}), at least one")
    font = ImageFont.load_default(size=14)
    h = round(width * images[0].shape[0] / images[0].shape[1])
    pad, lines, line_h = 6, max(len(c.splitlines()) for c in captions), 18
    cell_h = h + pad + lines * line_h + pad
    cols = min(cols, len(images))
    n_rows = -(-len(images) // cols)
    top = 28 if title else 0
    sheet = Image.new("RGB", (cols * (width + pad) + pad, top + n_rows * cell_h + pad), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, 6), title, fill=(20, 20, 20), font=ImageFont.load_default(size=16))
    for k, (img, cap) in enumerate(zip(images, captions, strict=True)):
        x, y = pad + (k % cols) * (width + pad), top + pad + (k // cols) * cell_h
        sheet.paste(Image.fromarray(np.asarray(img, np.uint8)).resize((width, h)), (x, y))
        for j, line in enumerate(cap.splitlines()):
            draw.text((x, y + h + 4 + j * line_h), line, fill=(20, 20, 20) if j == 0 else (90, 90, 90), font=font)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
