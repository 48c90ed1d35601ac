"""A route as a GIF: the front camera from the pose the ego reached beside a bird's-eye view.

The camera is rendered again from the recorded states (the renderer is a function of the poses),
so a route keeps no frames while it runs; the bird's-eye view is drawn with PIL: road edges,
lane lines, stop lines, the other vehicles (grey; red once hit), the ego (blue) and its trail,
with the time, the command in force and any shield intervention written on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from core.windows import DT_S
from evals.boxes import box_corners, ego_corners
from evals.closed_loop.runner import RouteRecord
from transforms.twin.render import FrameRenderer

BEV_RANGE_M = (-20.0, 60.0)  # behind / ahead of the ego
BEV_PX_PER_M = 3.0
FRAME_EVERY = 2  # steps per GIF frame (5 fps)


def _bev(record: RouteRecord, i: int, size: tuple[int, int], collided: set[int]) -> Image.Image:
    w, h = size
    img = Image.new("RGB", size, (60, 110, 50))
    draw = ImageDraw.Draw(img)
    ex, ey, eyaw = record.ego[i, 0], record.ego[i, 1], record.ego[i, 2]
    c, s = np.cos(-eyaw), np.sin(-eyaw)

    def px(x: np.ndarray, y: np.ndarray) -> list[tuple[float, float]]:
        lx, ly = c * (x - ex) - s * (y - ey), s * (x - ex) + c * (y - ey)  # ego frame: x ahead, y left
        return list(zip(w / 2 - ly * BEV_PX_PER_M, h - (lx - BEV_RANGE_M[0]) * BEV_PX_PER_M, strict=True))

    road = record.route.world.road
    es = record.ego[i, 6]
    ss = np.arange(es + BEV_RANGE_M[0] - 10, es + BEV_RANGE_M[1] + 10, 1.0)
    left = road.frenet_to_xy(ss, np.full_like(ss, road.left_edge_d))
    right = road.frenet_to_xy(ss, np.full_like(ss, road.right_edge_d))
    draw.polygon(px(*left) + px(*right)[::-1], fill=(88, 88, 92))
    for k in range(1, road.n_lanes):
        draw.line(px(*road.frenet_to_xy(ss, np.full_like(ss, (k - 0.5) * road.lane_width_m))), fill=(230, 230, 230))
    draw.line(px(*road.frenet_to_xy(ss, np.full_like(ss, road.divider_d))), fill=(225, 190, 50), width=2)
    for line in road.stop_lines_s_m:
        sl = np.array([line, line])
        draw.line(px(*road.frenet_to_xy(sl, np.array([road.right_edge_d, road.divider_d]))), fill=(255, 255, 255), width=3)
    for a, st in enumerate(record.agents[i]):
        corners = box_corners(st[0], st[1], st[2], st[3], st[4])
        draw.polygon(px(corners[:, 0], corners[:, 1]), fill=(200, 60, 50) if a in collided else (175, 175, 175))
    draw.line(px(record.ego[: i + 1, 0], record.ego[: i + 1, 1]), fill=(120, 170, 255), width=2)
    ec = ego_corners(np.array(ex), np.array(ey), np.array(eyaw))
    draw.polygon(px(ec[:, 0], ec[:, 1]), fill=(40, 110, 240))
    return img


def bev_image(record: RouteRecord, i: int, collided_track_ids: Sequence[int] = (), height: int = 288) -> Image.Image:
    """The bird's-eye view at step i; the vehicles in `collided_track_ids` drawn red."""
    hit = set(collided_track_ids)
    collided = {a for a, tr in enumerate(record.route.world.tracks) if tr.track_id in hit}
    return _bev(record, i, (int((BEV_RANGE_M[1] - BEV_RANGE_M[0]) * BEV_PX_PER_M * 0.6), height), collided)


def camera_frames(record: RouteRecord, steps: Iterable[int], width: int, height: int) -> Iterator[tuple[int, np.ndarray]]:
    """(step, front camera) rendered again from the recorded poses of the ego and the others."""
    renderer = FrameRenderer(record.route.world, record.route.camera(width, height))
    tracks = record.route.world.tracks
    for i in steps:
        e = record.ego[i]
        yield i, renderer.render(e[0], e[1], e[2], e[6], ((tr, a[0], a[1], a[2]) for tr, a in
                                                          zip(tracks, record.agents[i], strict=True)))


def route_gif(record: RouteRecord, path: str | Path, *, width: int = 256, height: int = 144,
              collided_track_ids: Sequence[int] = ()) -> Path:
    """Write the route's GIF (camera | bird's-eye view, 5 frames a second) and return its path; the
    vehicles the ego hit at fault (route_metrics' `collided_track_ids`) are drawn red."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hits = {iv.step: iv.reasons for iv in record.interventions}
    frames = []
    for i, cam in camera_frames(record, range(0, len(record.ego), FRAME_EVERY), width, height):
        e = record.ego[i]
        bev = bev_image(record, i, collided_track_ids, height * 2)
        canvas = Image.new("RGB", (width * 2 + bev.width, height * 2), (20, 20, 20))
        canvas.paste(Image.fromarray(cam).resize((width * 2, height * 2)), (0, 0))
        canvas.paste(bev, (width * 2, 0))
        draw = ImageDraw.Draw(canvas)
        cmd = record.command_at_step[min(i, len(record.command_at_step) - 1)] if record.command_at_step else ""
        note = next((f"shield: {', '.join(hits[k])}" for k in range(i - FRAME_EVERY + 1, i + 1) if k in hits), "")
        draw.text((6, 4), f"{record.policy}  {record.route.route_id}  t={i * DT_S:4.1f}s  v={e[3]:4.1f} m/s", fill=(255, 255, 0))
        draw.text((6, 18), f"command: {cmd}", fill=(255, 255, 255))
        if note:
            draw.text((6, 32), note, fill=(255, 90, 90))
        frames.append(canvas)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(FRAME_EVERY * DT_S * 1000), loop=0)
    return path
