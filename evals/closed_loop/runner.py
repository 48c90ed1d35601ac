"""Driving a route: simulator, Commander and policy running concurrently, as LeRobot's async inference does.

In `async` mode three threads share the work through queues, as LeRobot splits a policy server
from its robot client:
- the simulator (the caller's thread) steps the twin at 10 Hz of wall time and executes the
  newest plan it has; it sends an observation (the camera rendered from the ego's actual pose,
  the current command, the ego state) early enough that the next plan should arrive when the
  current one has run `execute_steps` steps (it learns how early from the latencies it sees);
- the policy server plans 64 steps of (a, κ) from each observation (after an imposed delay, if any);
- the Commander speaks once a second of route time.
A step that runs a plan beyond its first `execute_steps` (the next one was late) is *stale*; a plan
run to its end is followed by braking in lane (counted stale too). With a shield, each plan is
checked when it arrives and again every `execute_steps` of its use.

In `sync` mode the simulator waits for each plan (re-planned every `execute_steps` steps) and
runs as fast as it can: the baselines and the privileged driver are scored this way.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from core.windows import DT_S, N_FUT
from evals.closed_loop.commander import COMMAND_PERIOD_S, Command, Commander, CommanderView, RuleCommander
from evals.closed_loop.routes import Route
from evals.closed_loop.shield import Intervention, Shield, fallback
from transforms.twin.sim import EGO_REAR_AXLE_TO_CENTER_M, DriverPolicy, TwinEnv

DEVIATION_M = 5.0  # the route ends when the ego's centre is this far beyond a road edge
EGO_FIELDS = ("x_m", "y_m", "yaw_rad", "v_mps", "a_mps2", "kappa_1pm", "s_m", "d_m")


@dataclass(frozen=True)
class Observation:
    """What a non-privileged policy sees: the camera, the current command, its own state."""

    step: int
    t_s: float
    image: np.ndarray | None
    command: str
    state: tuple[float, float, float, float]  # v, a, κ, yaw rate


class Policy(Protocol):
    name: str
    needs_camera: bool
    privileged: bool  # plans from the env itself (the twin's ground truth), in the simulator's thread

    def plan(self, obs: Observation, env: TwinEnv | None) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class AgentPolicy:
    """The field agent: (front camera, command, ego state) -> 64 (a, κ)."""

    act: Callable  # FieldAgent.act(image, command, state) -> AgentOutput
    name: str = "field_agent"
    needs_camera: bool = True
    privileged: bool = False

    def plan(self, obs: Observation, env: TwinEnv | None) -> tuple[np.ndarray, np.ndarray]:
        out = self.act(obs.image, obs.command, obs.state)
        return np.asarray(out.accel_mps2, np.float64), np.asarray(out.curvature_1pm, np.float64)


@dataclass
class ConstantControlsPolicy:
    """The (a, κ) the ego measures now, held for 6.4 s (braking no further than to a stand)."""

    name: str = "constant_controls"
    needs_camera: bool = False
    privileged: bool = False

    def plan(self, obs: Observation, env: TwinEnv | None) -> tuple[np.ndarray, np.ndarray]:
        v, a, kappa, _ = obs.state
        speeds = np.maximum(v + a * DT_S * np.arange(1, N_FUT + 1), 0.0)
        return np.diff(np.concatenate([[v], speeds])) / DT_S, np.full(N_FUT, kappa)


@dataclass
class PrivilegedDriver:
    """The twin's driver model (transforms/twin/sim.py DriverPolicy), made per route."""

    name: str = "driver_model"
    needs_camera: bool = False
    privileged: bool = True
    _driver: DriverPolicy | None = None

    def reset(self, route: Route) -> None:
        self._driver = DriverPolicy(route.world)

    def plan(self, obs: Observation, env: TwinEnv | None) -> tuple[np.ndarray, np.ndarray]:
        if self._driver is None or env is None:
            raise ValueError("driver_model plans from the env: call reset(route) and run it privileged")
        return self._driver.plan(env)


@dataclass(frozen=True)
class LoopConfig:
    mode: Literal["async", "sync"] = "async"
    execute_steps: int = 5  # steps of each plan run before the next should take over
    delay_s: float = 0.0  # imposed on every plan, on top of its compute
    shield: bool = False
    reactive: bool = True  # other vehicles react (IDM, aware of the ego) or replay their log
    width: int = 256  # the twin's default camera
    height: int = 144

    def __post_init__(self) -> None:
        if self.mode not in ("async", "sync"):
            raise ValueError(f"mode={self.mode!r}: choose 'async' (concurrent, 10 Hz wall clock) or 'sync'")
        if not 1 <= self.execute_steps <= N_FUT:
            raise ValueError(f"execute_steps={self.execute_steps}: need 1..{N_FUT} steps of each plan")
        if not self.delay_s >= 0:
            raise ValueError(f"delay_s={self.delay_s}: an imposed inference delay is >= 0 s")


@dataclass
class RouteRecord:
    """Everything that happened on one route, step by step (T steps, T + 1 states)."""

    route: Route
    policy: str
    ego: np.ndarray  # (T+1, 8) EGO_FIELDS
    agents: np.ndarray  # (T+1, A, 6)
    agents_s: np.ndarray  # (T+1, A)
    command_at_step: list[str]  # (T,) meta-action in force
    commands: list[Command]
    stale: np.ndarray  # (T,) bool
    interventions: list[Intervention]
    latencies_s: list[float]
    render_s: list[float]
    terminated: str  # time | goal | route_deviation


@dataclass
class _Chunk:
    start: int  # the step of the observation it was planned from
    accel: np.ndarray
    kappa: np.ndarray
    source: str = "policy"


@dataclass
class _Trace:
    ego: list = field(default_factory=list)
    agents: list = field(default_factory=list)
    agents_s: list = field(default_factory=list)
    command_at_step: list = field(default_factory=list)
    stale: list = field(default_factory=list)
    commands: list = field(default_factory=list)
    interventions: list = field(default_factory=list)

    def snap(self, env: TwinEnv) -> None:
        self.ego.append([getattr(env.ego, f) for f in EGO_FIELDS])
        self.agents.append(env.agents())
        self.agents_s.append(env.frenet()[0])


def _state(env: TwinEnv) -> tuple[float, float, float, float]:
    e = env.ego
    return (e.v_mps, e.a_mps2, e.kappa_1pm, e.kappa_1pm * e.v_mps)


def _deviated(env: TwinEnv) -> bool:
    road = env.road
    d = env.ego.d_m + EGO_REAR_AXLE_TO_CENTER_M * math.sin(env.ego.yaw_rad - float(road.at(np.array([env.ego.s_m]))[2][0]))
    return d < road.right_edge_d - DEVIATION_M or d > road.left_edge_d + DEVIATION_M


class _Worker:
    """A thread that answers each item of its inbox with `fn(item)` into its outbox (None stops it)."""

    def __init__(self, fn: Callable, maxsize: int = 0) -> None:
        self.inbox: queue.Queue = queue.Queue(maxsize)
        self.outbox: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.busy = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(fn,), daemon=True)
        self._thread.start()

    def _loop(self, fn: Callable) -> None:
        while (item := self.inbox.get()) is not None:
            try:
                self.outbox.put(fn(item))
            except BaseException as exc:  # handed to the simulator, which raises it
                self.error = exc
                self.outbox.put(None)
                return
            finally:
                self.busy.clear()

    def submit(self, item: object) -> None:
        self.busy.set()
        self.inbox.put(item)

    def drain(self) -> list:
        out = []
        while True:
            try:
                got = self.outbox.get_nowait()
            except queue.Empty:
                break
            if self.error is not None:
                raise RuntimeError(f"a closed-loop worker failed: {self.error!r}") from self.error
            out.append(got)
        return out

    def wait(self, timeout_s: float = 120.0) -> object:
        got = self.outbox.get(timeout=timeout_s)
        if self.error is not None:
            raise RuntimeError(f"a closed-loop worker failed: {self.error!r}") from self.error
        return got

    def stop(self) -> None:
        self.inbox.put(None)
        self._thread.join(timeout=30)


class _Loop:
    """One route under one policy: the simulator's side of the loop."""

    def __init__(self, route: Route, policy: Policy, cfg: LoopConfig, commander: Commander | None) -> None:
        self.route, self.policy, self.cfg = route, policy, cfg
        needs_cam = policy.needs_camera or getattr(commander, "needs_plan", False)
        self.env = TwinEnv(route.world, reactive=cfg.reactive,
                           camera=route.camera(cfg.width, cfg.height) if needs_cam else None)
        self.commander = commander if commander is not None else RuleCommander(route)
        self.route_plan = DriverPolicy(route.world) if getattr(self.commander, "needs_plan", False) else None
        self.shield = Shield() if cfg.shield else None
        self.trace = _Trace()
        self.latencies: list[float] = []
        self.command: Command | None = None
        if hasattr(policy, "reset"):
            policy.reset(route)

    # -- what the others are given

    def view(self) -> CommanderView:
        env = self.env
        s, d = env.frenet()
        pa = pk = None
        if self.route_plan is not None:
            pa, pk = self.route_plan.plan(env)
        image = env.render() if self.route_plan is not None else None
        return CommanderView(env.t_s, self.route, env.ego, env.agents(), s, d, image, pa, pk)

    def observation(self) -> Observation:
        image = self.env.render() if self.policy.needs_camera else None
        return Observation(self.env.k, self.env.t_s, image, self.command.text if self.command else "", _state(self.env))

    def planned(self, obs: Observation) -> _Chunk:
        t0 = time.perf_counter()
        accel, kappa = self.policy.plan(obs, self.env if self.policy.privileged else None)
        if self.cfg.delay_s:
            time.sleep(self.cfg.delay_s)
        self.latencies.append(time.perf_counter() - t0)
        return _Chunk(obs.step, np.asarray(accel, np.float64), np.asarray(kappa, np.float64))

    # -- the simulator's step

    def guarded(self, chunk: _Chunk) -> _Chunk:
        """The chunk from this step on, through the shield when there is one."""
        j = self.env.k - chunk.start
        if self.shield is None or j >= len(chunk.accel):
            return chunk
        a, k, hit = self.shield.guard(self.env, chunk.accel[j:], chunk.kappa[j:])
        if hit is None:
            return chunk
        self.trace.interventions.append(hit)
        return _Chunk(self.env.k, a, k, f"shield:{hit.fallback}")

    def rechecks(self, chunk: _Chunk) -> bool:
        """Whether the shield looks again at a plan in use (every `execute_steps` of it; a fallback it chose
        itself runs until the next plan comes)."""
        j = self.env.k - chunk.start
        return self.shield is not None and chunk.source == "policy" and j > 0 and j % self.cfg.execute_steps == 0

    def control(self, chunk: _Chunk) -> tuple[float, float, bool]:
        j = self.env.k - chunk.start
        if j >= len(chunk.accel):  # the plan ran out before a new one came: brake in lane
            a, k = fallback(self.env, "brake", 1)
            return float(a[0]), float(k[0]), True
        return float(chunk.accel[j]), float(chunk.kappa[j]), j >= self.cfg.execute_steps

    def advance(self, a: float, k: float, stale: bool) -> str | None:
        self.trace.command_at_step.append(self.command.meta_action if self.command else "")
        self.trace.stale.append(stale)
        self.env.step(a, k)
        self.trace.snap(self.env)
        progress = self.env.ego.s_m - self.trace.ego[0][6]
        if progress >= self.route.length_m:
            return "goal"
        if _deviated(self.env):
            return "route_deviation"
        return None

    def set_command(self, cmd: Command) -> None:
        self.command = cmd
        self.trace.commands.append(cmd)

    def record(self, terminated: str) -> RouteRecord:
        t = self.trace
        return RouteRecord(self.route, self.policy.name, np.array(t.ego), np.array(t.agents), np.array(t.agents_s),
                           t.command_at_step, t.commands, np.array(t.stale, bool), t.interventions, self.latencies,
                           list(self.env.render_s), terminated)


def _lead_steps(latencies: list[float], execute_steps: int) -> int:
    """How many steps before a plan's hand-over to send the next observation: the p95 latency seen."""
    if not latencies:
        return 1
    return int(np.clip(math.ceil(float(np.percentile(latencies[-20:], 95)) / DT_S), 1, execute_steps))


def _run_sync(loop: _Loop, n_steps: int) -> str:
    chunk = None
    for _ in range(n_steps):
        k = loop.env.k
        if k % round(COMMAND_PERIOD_S / DT_S) == 0:
            loop.set_command(loop.commander(loop.view()))
        if chunk is None or k - chunk.start >= loop.cfg.execute_steps:
            chunk = loop.guarded(loop.planned(loop.observation()))
        elif loop.rechecks(chunk):
            chunk = loop.guarded(chunk)
        if (end := loop.advance(*loop.control(chunk))) is not None:
            return end
    return "time"


def _run_async(loop: _Loop, n_steps: int) -> str:
    """The simulator paced at 10 Hz of wall time; the policy and the Commander in their own threads."""
    cfg, period = loop.cfg, round(COMMAND_PERIOD_S / DT_S)
    server = _Worker(loop.planned)
    commander = _Worker(loop.commander)
    try:
        commander.submit(loop.view())
        loop.set_command(commander.wait())
        server.submit(loop.observation())
        chunk = loop.guarded(server.wait())  # the car waits for its first plan, as a robot client does
        sent = 0
        start = time.perf_counter()
        for i in range(n_steps):
            k = loop.env.k
            time.sleep(max(0.0, start + i * DT_S - time.perf_counter()))
            for cmd in commander.drain():
                loop.set_command(cmd)
            if k % period == 0 and k and not commander.busy.is_set():
                commander.submit(loop.view())
            newest = [c for c in server.drain() if c is not None]
            if newest:
                chunk = loop.guarded(max(newest, key=lambda c: c.start))
            elif loop.rechecks(chunk):
                chunk = loop.guarded(chunk)
            if not server.busy.is_set() and k - sent >= cfg.execute_steps - _lead_steps(loop.latencies, cfg.execute_steps):
                server.submit(loop.observation())
                sent = k
            if (end := loop.advance(*loop.control(chunk))) is not None:
                return end
        return "time"
    finally:
        server.stop()
        commander.stop()


def run_route(route: Route, policy: Policy, cfg: LoopConfig, commander: Commander | None = None) -> RouteRecord:
    """Drive one route under a policy (and a Commander: the rule-based one unless given)."""
    loop = _Loop(route, policy, cfg, commander)
    loop.trace.snap(loop.env)
    n_steps = round(route.seconds / DT_S)
    end = (_run_async if cfg.mode == "async" else _run_sync)(loop, n_steps)
    return loop.record(end)
