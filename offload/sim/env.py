"""Gymnasium environment of CNN inference offloading in a dynamic MEC network.

Description:
    M IoT devices and N edge servers (ES); every slot of length τ each active device generates
    one task (size d, deadline δ) and the policy gives it one ES n and one early exit l, the
    option o = n*L + l (Section V-C). Devices send their tasks one after another (eq. (6)),
    each ES serves its tasks first come, first served (eq. (7)), and the completion time is
    eq. (8). Scenarios 1-4 follow Figs. 5-8 (see `MECConfig`); with `dynamic_topology`
    devices join and leave and links go down and up.

State (observation, padded to D = max_devices rows; inactive rows are zero):
    active (D,), task_bits (D,), deadline_ms (D,), rate_mbps (D, N) as the policy knows it,
    link (D, N), device_backlog_ms (D,), server_backlog_ms (N,), capacity (N,),
    exit_ms (N, L) at full capacity, exit_accuracy (L,). `env.slot_state` holds the same
    information compactly over the active devices (`SlotState`).

Action:
    MultiDiscrete([N*L] * D), one option per padded device (inactive entries ignored), or an
    int array of length M (one option per active device in `slot_state.device_ids` order).
    Under a dynamic topology some options are unusable in a slot: `info["action_mask"]`
    (from `reset` and every `step`, for the new current slot) is a (D, N*L) int8 array, 1
    where device row d may take option o (its link to ES o // L is up; every option on an
    inactive row, which is ignored), so `action_space.sample(mask=tuple(info["action_mask"]))`
    draws only usable actions. Every action of `action_space` is accepted (the Gymnasium
    contract): an option over a link that is down loses that task -- it is not sent, not
    computed, earns Q = 0 and fails (completion inf), its uplink and the ES queues are
    untouched, and `info["num_lost"]` counts it. Actions outside the space (wrong length,
    options outside [0, N*L), non-integers) raise ValueError.

Reward:
    Q of eq. (9) computed with the true rates and inference times. Under
    ``cross_slot_queue="fcfs"`` tasks still in transit at the slot's end join the next slot's
    FCFS queue (`offload.sim.carry`, `slot_state.carried`), and the reward and the counts in
    `info` are those of the tasks whose outcome the step fixes.

Metrics:
    `info["outcome"]` is a `SlotOutcome` (per task: completion, success of eq. (11), accuracy,
    Q); `offload.sim.metrics` turns them into the measures of Section VI-D.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ..exit_table import ExitTable
from .carry import carried_state, empty_carry
from .config import MECConfig
from .dynamics import SlotDraw, draw_slot, initial_fading, update_topology
from .reward import psi_scale
from .state import ScoringRules, SlotState
from .step import serve_one

__all__ = ["OffloadEnv"]

_BIG_MS = 1e6  # observation cap of backlogs, ms (they grow without bound with late_policy="send")


def server_exit_ms(table: ExitTable, cfg: MECConfig) -> np.ndarray:
    """(N, L) computation time of every candidate exit on each ES at full capacity, ms: the
    table's latency column of the ES's device type × ``compute_scale``."""
    return cfg.compute_scale * np.stack([table.latency_of(dev) for dev in cfg.server_devices])


def scoring_rules(cfg: MECConfig) -> ScoringRules:
    """The reward readings of a configuration (``psi_form``, ``late_policy``,
    ``completion_origin``) as the evaluator uses them."""
    return ScoringRules(
        psi_scale=psi_scale(cfg.psi_form, cfg.psi_steepness, cfg.reward_form),
        drop_late=cfg.late_policy == "drop",
        from_transmission=cfg.completion_origin == "transmission",
    )


class OffloadEnv(gym.Env):
    """The MEC offloading environment (see the module docstring).

    Args:
        table: candidate exit table (every row is a candidate exit).
        config: network parameters and readings; defaults to `MECConfig()`.

    Raises:
        ExitTableError: a server device type has no latency column in `table`.
    """

    metadata = {"render_modes": []}

    def __init__(self, table: ExitTable, config: MECConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config if config is not None else MECConfig()
        self.table = table
        self.exit_ms = server_exit_ms(table, cfg)
        self.exit_accuracy = table.accuracy.astype(np.float64)
        self.rules = scoring_rules(cfg)
        num_dev, num_srv, num_exits = cfg.padded_devices, cfg.num_servers, table.num_exits
        big = np.float32(_BIG_MS)
        max_bits = cfg.task_kb[1] * cfg.bits_per_kb
        max_exit = float(self.exit_ms.max())
        self.observation_space = spaces.Dict(
            {
                "active": spaces.MultiBinary(num_dev),
                "task_bits": spaces.Box(0.0, max_bits, (num_dev,), np.float32),
                "deadline_ms": spaces.Box(0.0, cfg.deadline_ms, (num_dev,), np.float32),
                "rate_mbps": spaces.Box(0.0, cfg.rate_mbps[1], (num_dev, num_srv), np.float32),
                "link": spaces.MultiBinary((num_dev, num_srv)),
                "device_backlog_ms": spaces.Box(0.0, big, (num_dev,), np.float32),
                "server_backlog_ms": spaces.Box(0.0, big, (num_srv,), np.float32),
                "capacity": spaces.Box(0.0, 1.0, (num_srv,), np.float32),
                "exit_ms": spaces.Box(0.0, max_exit, (num_srv, num_exits), np.float32),
                "exit_accuracy": spaces.Box(0.0, 1.0, (num_exits,), np.float32),
            }
        )
        self.action_space = spaces.MultiDiscrete(np.full(num_dev, num_srv * num_exits))
        self._state: SlotState | None = None

    # ----------------------------------------------------------------- Gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an episode: `num_devices` active devices, all links up, empty queues."""
        super().reset(seed=seed)
        cfg = self.config
        num_dev, num_srv = cfg.padded_devices, cfg.num_servers
        self.slot = 0
        self.active = np.arange(num_dev) < cfg.num_devices
        self.link = np.ones((num_dev, num_srv), dtype=bool)
        self.device_free_ms = np.zeros(num_dev)  # uplink busy time after the slot start
        self.server_free_ms = np.zeros(num_srv)  # ES busy time after the slot start
        # cross_slot_queue="fcfs": tasks in transit (true and predicted computation times)
        self._carry = empty_carry(1) if cfg.cross_slot_queue == "fcfs" else None
        self._fading = initial_fading(cfg, self.np_random)
        self._new_slot()
        return self._observation(), {"slot": self.slot, "action_mask": self._action_mask()}

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Apply one decision to the current slot and advance to the next slot.

        The episode never ends: ``terminated`` and ``truncated`` are always False (a caller
        stops after the slots it wants).

        Raises:
            AssertionError: `reset()` was not called.
            ValueError: the action has the wrong length, an option outside [0, N*L) or a
                non-integer option. (An option over a link that is down is no error: that
                task is lost, see the module docstring.)
        """
        assert self._state is not None, "call reset() before step()"
        cfg, state, draw = self.config, self._state, self._draw
        decision = self._compact(action)
        ids = state.device_ids
        served = serve_one(
            state,
            decision,
            rate_true_mbps=draw.rate_true_mbps[ids],
            jitter=draw.jitter[ids],
            slot_ms=cfg.slot_ms,
            carry=self._carry,
        )
        self._carry = served.carry
        outcome, linked, predicted_q = served.outcome, served.linked, served.predicted_q
        self.device_free_ms[ids] = served.device_free_ms
        self.device_free_ms = np.maximum(self.device_free_ms - cfg.slot_ms, 0.0)
        self.server_free_ms = np.maximum(served.server_free_ms - cfg.slot_ms, 0.0)
        info = {
            "slot": self.slot,
            "outcome": outcome,
            "num_tasks": int(outcome.device_ids.size),  # fcfs: the tasks fixed in this step
            "num_success": int(outcome.success.sum()),
            "num_lost": int((~linked).sum()),
            "accuracy_sum": float(outcome.accuracy.sum()),
            "q_sum": float(outcome.q.sum()),
            "predicted_q": predicted_q,
            "slot_ms": cfg.slot_ms,
        }
        self.slot += 1
        self.active, self.link, joined = update_topology(
            cfg, self.np_random, self.active, self.link
        )
        self.device_free_ms[joined] = 0.0
        self._new_slot()
        info["action_mask"] = self._action_mask()
        return self._observation(), float(outcome.q.sum()), False, False, info

    # ------------------------------------------------------------------ properties
    @property
    def slot_state(self) -> SlotState:
        """The agent-visible state of the current slot, compact over the active devices."""
        assert self._state is not None, "call reset() before reading slot_state"
        return self._state

    @property
    def slot_draw(self) -> SlotDraw:
        """The current slot's random quantities, true values included (for tests and
        diagnostics; a policy must not read it)."""
        assert self._state is not None, "call reset() before reading slot_draw"
        return self._draw

    # ------------------------------------------------------------------ internals
    def _new_slot(self) -> None:
        self._draw = draw = draw_slot(self.config, self.np_random, self._fading)
        self._fading = draw.fading
        ids = np.flatnonzero(self.active)
        self._state = SlotState(
            device_ids=ids,
            task_bits=draw.task_bits[ids],
            deadline_ms=np.full(ids.size, self.config.deadline_ms),
            rate_mbps=draw.rate_est_mbps[ids],
            link=self.link[ids].copy(),
            device_backlog_ms=self.device_free_ms[ids].copy(),
            server_backlog_ms=self.server_free_ms.copy(),
            capacity=draw.capacity.copy(),
            exit_ms=self.exit_ms,
            exit_accuracy=self.exit_accuracy,
            rules=self.rules,
            carried=None if self._carry is None else carried_state(*self._carry).take(0),
        )

    def _action_mask(self) -> np.ndarray:
        """(D, N*L) int8: 1 where a padded device row may take an option this slot (link up;
        every option on an inactive row, whose entry is ignored)."""
        num_exits = self.table.num_exits
        mask = np.ones((self.config.padded_devices, self.config.num_servers * num_exits), np.int8)
        mask[self._state.device_ids] = np.repeat(self._state.link, num_exits, axis=1)
        return mask

    def _compact(self, action: np.ndarray) -> np.ndarray:
        """Action as one option per active device (accepts length M or padded length D)."""
        state = self._state
        act = np.asarray(action)
        num_active, num_pad = state.num_devices, self.config.padded_devices
        if act.ndim != 1 or act.shape[0] not in (num_active, num_pad):
            raise ValueError(
                f"action has shape {act.shape}; pass {num_active} options (one per active "
                f"device) or {num_pad} (one per padded device)."
            )
        if act.size and not np.issubdtype(act.dtype, np.integer):
            if not np.all(np.isfinite(act)) or not np.all(act == np.round(act)):
                raise ValueError("actions must be integer option indices o = n*L + l.")
        act = act.astype(np.int64)
        if act.shape[0] == num_pad and num_pad != num_active:
            act = act[state.device_ids]
        if act.size and (act.min() < 0 or act.max() >= state.num_options):
            raise ValueError(
                f"options must lie in [0, {state.num_options}) (N*L); got values in "
                f"[{act.min()}, {act.max()}]."
            )
        return act

    def _observation(self) -> dict[str, np.ndarray]:
        state, cfg = self._state, self.config
        num_dev, num_srv = cfg.padded_devices, cfg.num_servers
        ids = state.device_ids

        def padded(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
            out = np.zeros(shape, dtype=np.float32)
            out[ids] = values
            return out

        link = np.zeros((num_dev, num_srv), dtype=np.int8)
        link[ids] = state.link
        return {
            "active": self.active.astype(np.int8),
            "task_bits": padded(state.task_bits, (num_dev,)),
            "deadline_ms": padded(state.deadline_ms, (num_dev,)),
            "rate_mbps": padded(state.rate_mbps, (num_dev, num_srv)),
            "link": link,
            "device_backlog_ms": padded(np.minimum(state.device_backlog_ms, _BIG_MS), (num_dev,)),
            "server_backlog_ms": np.minimum(state.server_backlog_ms, _BIG_MS).astype(np.float32),
            "capacity": state.capacity.astype(np.float32),
            "exit_ms": state.exit_ms.astype(np.float32),
            "exit_accuracy": state.exit_accuracy.astype(np.float32),
        }
