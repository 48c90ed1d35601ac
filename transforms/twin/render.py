"""Front-camera rendering for the twin: ray casting through the clip's own f-theta intrinsics.

Each pixel's ray is computed once per clip from the intrinsics and extrinsics the clip ships
(the same numbers `physical_ai_av`'s `FThetaCameraModel` reads back), then intersected per frame
with a flat ground (road surface, lane markings, stop lines, verges) and with the other vehicles'
boxes. The result is a crude but geometrically true image: a lane line sits where the camera
would see it, a lead car grows as the gap closes, the horizon tilts with nothing but the mounting.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from transforms.twin.world import Track, World

FOV_DEG = 120.0
CAMERA_XYZ_RIG_M = (1.9, 0.0, 1.45)  # behind the windscreen, above the front axle
CAMERA_PITCH_DOWN_DEG = 3.0
# The other cameras Alpamayo reads (docs/references.md, *Alpamayo-R1*), mounted as on a Hyperion rig: (field of view, yaw left
# of forward, position in the rig frame). Cross cameras look out to the sides over the front corners.
OTHER_CAMERAS = {
    "camera_cross_left_120fov": (120.0, 60.0, (1.75, 0.85, 1.2)),
    "camera_cross_right_120fov": (120.0, -60.0, (1.75, -0.85, 1.2)),
    "camera_front_tele_30fov": (30.0, 0.0, (1.9, 0.0, 1.45)),
}
MAX_RANGE_M = 300.0

SKY_TOP = np.array([95, 140, 205], np.float32)
SKY_HORIZON = np.array([200, 215, 230], np.float32)
HAZE = np.array([190, 200, 210], np.float32)
ASPHALT = np.array([88, 88, 92], np.float32)
SHOULDER = np.array([120, 112, 100], np.float32)
GRASS = np.array([72, 118, 56], np.float32)
WHITE = np.array([235, 235, 235], np.float32)
YELLOW = np.array([225, 190, 50], np.float32)


@dataclass(frozen=True)
class FThetaCamera:
    """An f-theta camera as PAI stores it: r(θ) = Σ fw_i θ^i and θ(r) = Σ bw_i r^i, in pixels."""

    width: int
    height: int
    cx: float
    cy: float
    fw_poly: tuple[float, ...]  # 5 coefficients
    bw_poly: tuple[float, ...]  # 5 coefficients
    quat_xyzw: tuple[float, float, float, float]  # sensor (optical) -> rig
    xyz_m: tuple[float, float, float]

    @classmethod
    def front_wide(cls, width: int, height: int, rng: np.random.Generator) -> FThetaCamera:
        """A 120° f-theta lens like the Hyperion front-wide camera, slightly varied per clip."""
        return cls.mounted(width, height, rng, fov_deg=FOV_DEG, yaw_deg=0.0, xyz_m=CAMERA_XYZ_RIG_M)

    @classmethod
    def other(cls, name: str, width: int, height: int, rng: np.random.Generator) -> FThetaCamera:
        """One of OTHER_CAMERAS, slightly varied per clip."""
        if name not in OTHER_CAMERAS:
            raise ValueError(f"the twin renders {['camera_front_wide_120fov', *OTHER_CAMERAS]}, not {name!r}")
        fov, yaw, xyz = OTHER_CAMERAS[name]
        return cls.mounted(width, height, rng, fov_deg=fov, yaw_deg=yaw, xyz_m=xyz)

    @classmethod
    def mounted(cls, width: int, height: int, rng: np.random.Generator, *, fov_deg: float, yaw_deg: float,
                xyz_m: tuple[float, float, float]) -> FThetaCamera:
        """An f-theta lens of this field of view, looking `yaw_deg` left of forward, pitched down a little."""
        half_fov = np.deg2rad(fov_deg / 2)
        k3 = -0.02 * (1 + 0.2 * rng.standard_normal())
        f = (width / 2) / (half_fov * (1 + k3 * half_fov**2))
        fw = (0.0, f, 0.0, f * k3, 0.0)
        theta = np.linspace(0, 1.25 * half_fov, 400)
        r = np.polynomial.polynomial.polyval(theta, fw)
        bw = tuple(float(c) for c in np.polynomial.polynomial.polyfit(r, theta, 4))
        cx = width / 2 - 0.5 + rng.normal(0, width * 0.002)
        cy = height / 2 - 0.5 + rng.normal(0, height * 0.002)
        pitch = np.deg2rad(CAMERA_PITCH_DOWN_DEG + rng.normal(0, 0.3))
        yaw = np.deg2rad(yaw_deg + rng.normal(0, 0.3))
        optical_to_rig = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
        rot = Rotation.from_euler("zy", [yaw, pitch]).as_matrix() @ optical_to_rig
        q = Rotation.from_matrix(rot).as_quat()
        xyz = tuple(float(v) for v in np.add(xyz_m, rng.normal(0, 0.02, 3)))
        return cls(width, height, float(cx), float(cy), tuple(float(v) for v in fw), bw,
                   tuple(float(v) for v in q), xyz)  # type: ignore[arg-type]

    def rays_rig(self) -> np.ndarray:
        """(H*W, 3) unit rays of the pixel centres in the rig frame (x forward, y left, z up)."""
        u, v = np.meshgrid(np.arange(self.width) + 0.5, np.arange(self.height) + 0.5)
        p = np.stack([u.ravel() - self.cx, v.ravel() - self.cy], -1)
        r = np.maximum(np.linalg.norm(p, axis=-1), 1e-9)
        th = np.polynomial.polynomial.polyval(r, self.bw_poly)
        ray_opt = np.stack([np.sin(th) * p[:, 0] / r, np.sin(th) * p[:, 1] / r, np.cos(th)], -1)
        return ray_opt @ Rotation.from_quat(self.quat_xyzw).as_matrix().T


def _mark(d: np.ndarray, centre: float, half_width: float) -> np.ndarray:
    return np.abs(d - centre) < half_width


def _ground_colour(world: World, s: np.ndarray, d: np.ndarray) -> np.ndarray:
    road = world.road
    w = road.lane_width_m
    col = np.empty((len(s), 3), np.float32)
    on_road = (d > road.right_edge_d) & (d < road.left_edge_d)
    shoulder = ~on_road & (d > road.right_edge_d - 1.2) & (d < road.left_edge_d + 1.2)
    col[:] = GRASS
    col[shoulder] = SHOULDER
    # faint longitudinal patches so that motion is visible on the asphalt itself
    patch = (np.floor(s / 7.0).astype(np.int64) * 2654435761 % 7).astype(np.float32) - 3.0
    col[on_road] = ASPHALT + patch[on_road, None] * 1.5
    half = 0.075
    white = _mark(d, road.right_edge_d + 0.1, half) | _mark(d, road.left_edge_d - 0.1, half)
    dashes = np.mod(s, 12.0) < 3.0
    for i in range(1, road.n_lanes):
        white |= _mark(d, (i - 0.5) * w, half) & dashes
    for s_line in road.stop_lines_s_m:
        white |= (s > s_line) & (s < s_line + 0.5) & (d > road.right_edge_d) & (d < road.divider_d)
    yellow = _mark(d, road.divider_d - 0.12, half) | _mark(d, road.divider_d + 0.12, half)
    col[white] = WHITE
    col[yellow] = YELLOW
    return col


AZ_MARGIN_RAD = 0.01  # rays this close outside a box's azimuth span are tested too (rounding)


def _candidate_rays(ray_az: np.ndarray, origin: np.ndarray, eyaw: float, tx: float, ty: float, tyaw: float,
                    length_m: float, width_m: float) -> np.ndarray | None:
    """Indices of the rays whose rig-frame azimuth lies within the box's span as seen from the camera;
    None (test every ray) when the camera is inside the footprint or the span wraps behind it."""
    c, s = np.cos(tyaw), np.sin(tyaw)
    hl, hw = length_m / 2, width_m / 2
    cx = tx + c * np.array([hl, hl, -hl, -hl]) - s * np.array([hw, -hw, -hw, hw]) - origin[0]
    cy = ty + s * np.array([hl, hl, -hl, -hl]) + c * np.array([hw, -hw, -hw, hw]) - origin[1]
    rel = np.arctan2(cy, cx) - eyaw
    rel = (rel + np.pi) % (2 * np.pi) - np.pi
    if np.ptp(rel) > np.pi or np.any(np.abs(rel) > 0.9 * np.pi):
        return None
    lo, hi = rel.min() - AZ_MARGIN_RAD, rel.max() + AZ_MARGIN_RAD
    return np.flatnonzero((ray_az >= lo) & (ray_az <= hi))


def _box_colour(tr: Track, face: np.ndarray, z_hit_m: np.ndarray) -> np.ndarray:
    """(N, 3) colours of a vehicle's hit points: face 0 front/back, 1 side, 2 roof; z above the road."""
    shade = np.array([0.85, 0.65, 1.0], np.float32)[face]
    colour = np.asarray(tr.color_rgb, np.float32)[None, :] * shade[:, None]
    glass = (z_hit_m > 0.55 * tr.height_m) & (face < 2) & (tr.label_class != "truck")
    colour[glass] = np.array([40, 50, 60], np.float32)
    colour[z_hit_m < 0.35] *= 0.35  # wheels and the shadow under the body
    return colour


class FrameRenderer:
    """One clip's camera, set up once: its rays, sky and ground hits are fixed in the rig frame, so a
    frame from any ego pose costs one ground lookup and one slab test per visible vehicle.

    The closed loop (transforms/twin/sim.py) renders from the pose the ego actually reached;
    `render_frames` renders the logged drive.
    """

    def __init__(self, world: World, cam: FThetaCamera) -> None:
        self.world, self.cam = world, cam
        rays = cam.rays_rig()
        self.rays, self.n = rays, len(rays)
        self.cam_xyz = np.asarray(cam.xyz_m)
        # Elevation-graded sky, fixed per clip (the camera does not pitch with the flat road).
        elev = np.clip(rays[:, 2], 0, 1)[:, None]
        self.sky = (SKY_HORIZON + (SKY_TOP - SKY_HORIZON) * np.sqrt(elev)).astype(np.float32)
        down = rays[:, 2] < -1e-4
        t_ground = np.full(self.n, np.inf)
        t_ground[down] = -self.cam_xyz[2] / rays[down, 2]
        t_ground[t_ground > MAX_RANGE_M] = np.inf
        self.t_ground = t_ground
        self.ground = np.isfinite(t_ground)
        self.g_rig = self.cam_xyz[None, :2] + t_ground[self.ground, None] * rays[self.ground, :2]
        self.fog = (1 - np.exp(-t_ground[self.ground] / 220.0)).astype(np.float32)[:, None]
        # each ray's azimuth in the rig frame: a box can only be hit by the rays between its corners'
        # azimuths, so the exact slab test runs on those alone (the same pixels, a fraction of the work)
        self.ray_az = np.arctan2(rays[:, 1], rays[:, 0])

    def render(self, ex: float, ey: float, eyaw: float, es: float,
               vehicles: Iterable[tuple[Track, float, float, float]]) -> np.ndarray:
        """(H, W, 3) uint8 RGB from the rear-axle pose (x, y, yaw; s its arc length, a projection hint)
        with each vehicle's track (size, colour) at its centre pose (x, y, yaw), anchor frame."""
        rays, n, cam_xyz = self.rays, self.n, self.cam_xyz
        c, s_ = np.cos(eyaw), np.sin(eyaw)
        gx = ex + c * self.g_rig[:, 0] - s_ * self.g_rig[:, 1]
        gy = ey + s_ * self.g_rig[:, 0] + c * self.g_rig[:, 1]
        gs, gd = self.world.road.xy_to_frenet(gx, gy, es + self.g_rig[:, 0])
        img = self.sky.copy()
        img[self.ground] = _ground_colour(self.world, gs, gd) * (1 - self.fog) + HAZE * self.fog
        depth = self.t_ground.copy()

        # vehicles: exact ray/box (slab) intersection in each box's own frame
        origin = np.array([ex + c * cam_xyz[0] - s_ * cam_xyz[1], ey + s_ * cam_xyz[0] + c * cam_xyz[1], cam_xyz[2]])
        for tr, tx, ty, tyaw in vehicles:
            if np.hypot(tx - ex, ty - ey) > MAX_RANGE_M:
                continue
            cand = _candidate_rays(self.ray_az, origin, eyaw, tx, ty, tyaw, tr.length_m, tr.width_m)
            if cand is not None and not len(cand):
                continue
            cb, sb = np.cos(-tyaw), np.sin(-tyaw)
            o = np.array([cb * (origin[0] - tx) - sb * (origin[1] - ty), sb * (origin[0] - tx) + cb * (origin[1] - ty),
                          origin[2] - tr.height_m / 2])
            r = rays if cand is None else rays[cand]  # rig frame -> world (ego yaw) -> the box's frame
            d = np.c_[c * r[:, 0] - s_ * r[:, 1], s_ * r[:, 0] + c * r[:, 1]]
            dl = np.c_[cb * d[:, 0] - sb * d[:, 1], sb * d[:, 0] + cb * d[:, 1], r[:, 2]]
            half = np.array([tr.length_m / 2, tr.width_m / 2, tr.height_m / 2])
            with np.errstate(divide="ignore", invalid="ignore"):
                t1 = (-half - o) / dl
                t2 = (half - o) / dl
            tnear3 = np.minimum(t1, t2)
            tnear_c = np.nanmax(tnear3, axis=1)
            tfar = np.nanmin(np.maximum(t1, t2), axis=1)
            depth_c = depth if cand is None else depth[cand]
            hit_c = (tfar >= np.maximum(tnear_c, 0)) & (tnear_c > 0) & (tnear_c < depth_c)
            if not hit_c.any():
                continue
            tnear3 = tnear3[hit_c]
            dl = dl[hit_c]
            if cand is None:
                hit, tnear = hit_c, tnear_c
            else:
                hit = np.zeros(n, dtype=bool)
                hit[cand[hit_c]] = True
                tnear = np.zeros(n)
                tnear[cand] = tnear_c
            z_hit = o[2] + tnear[hit] * dl[:, 2] + half[2]
            f = (1 - np.exp(-tnear[hit] / 220.0)).astype(np.float32)[:, None]
            img[hit] = _box_colour(tr, np.nanargmax(tnear3, axis=1), z_hit) * (1 - f) + HAZE * f
            depth[hit] = tnear[hit]
        return np.clip(img, 0, 255).astype(np.uint8).reshape(self.cam.height, self.cam.width, 3)


def render_frames(world: World, cam: FThetaCamera, frame_times_us: np.ndarray) -> Iterator[np.ndarray]:
    """Yield (H, W, 3) uint8 RGB frames of the front camera at the given clip times, along the logged drive."""
    renderer = FrameRenderer(world, cam)
    e = world.ego
    t_e = e.t_us.astype(np.float64)
    yaw_e = np.unwrap(e.yaw_rad)
    for t_us in np.asarray(frame_times_us, np.float64):
        ex, ey, eyaw = np.interp(t_us, t_e, e.x_m), np.interp(t_us, t_e, e.y_m), np.interp(t_us, t_e, yaw_e)
        es = np.interp(t_us, t_e, e.s_m)
        vehicles = ((tr, np.interp(t_us, t_e, tr.x_m), np.interp(t_us, t_e, tr.y_m),
                     np.interp(t_us, t_e, np.unwrap(tr.yaw_rad))) for tr in world.tracks)
        yield renderer.render(ex, ey, eyaw, es, vehicles)
