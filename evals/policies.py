"""The policies navsim_eval scores side by side, all as (B, 64) 10 Hz trajectories in the ego frame at t0.

- constant velocity and constant (a, κ): the kinematic baselines (transforms/baselines.py);
- logged: the recorded future (on the twin, the driver model: a sanity upper bound);
- the field agent, and the field agent told another window's command (does language matter?),
  whose commands `wrong_commands` picks.
"""

from __future__ import annotations

import numpy as np


def wrong_commands(commands: list[str], meta_actions: list[str], seed: int = 0) -> list[str | None]:
    """For each window, the command of another window whose meta-action differs (None when all agree).

    Partners come from a seeded permutation, so the ablation is reproducible and each command is
    reused about once.
    """
    if len(commands) != len(meta_actions):
        raise ValueError(f"{len(commands)} commands but {len(meta_actions)} meta-actions")
    order = np.random.default_rng(seed).permutation(len(commands))
    pos = np.empty_like(order)
    pos[order] = np.arange(len(order))
    out: list[str | None] = []
    for i in range(len(commands)):
        partner = None
        for step in range(1, len(order)):
            j = int(order[(pos[i] + step) % len(order)])
            if meta_actions[j] != meta_actions[i]:
                partner = commands[j]
                break
        out.append(partner)
    return out
