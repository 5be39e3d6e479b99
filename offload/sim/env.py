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
from .config import MECConfig
from .dynamics import PaperNetwork, SlotDraw
from .state import SlotState
from .step import RunStepper

__all__ = ["OffloadEnv", "SlotEnv"]

_BIG_MS = 1e6  # observation cap of backlogs, ms (they grow without bound with late_policy="send")


class SlotEnv(gym.Env):
    """The Gymnasium adapter of one run of a slot source: padded observations and actions over
    D device rows, the action check and the action mask, over the `RunStepper` of the slot
    source. A subclass sets the spaces in ``__init__`` (``_set_spaces``) and builds
    ``_stepper`` in ``reset`` (then returns ``_started()``).

    The observation is the dict of the `OffloadEnv` module docstring; ``active`` marks the rows
    of the slot state's devices (the rows that have a task this slot).
    """

    metadata = {"render_modes": []}

    def __init__(self, table: ExitTable, config: Any) -> None:
        super().__init__()
        self.config = config
        self.table = table
        self.exit_accuracy = table.accuracy.astype(np.float64)
        self._stepper: RunStepper | None = None

    def _set_spaces(
        self,
        num_rows: int,
        exit_ms: np.ndarray,
        *,
        max_bits: float,
        deadline_ms: float,
        max_rate: float,
        clip_rate: bool = False,
    ) -> None:
        """Observation and action spaces of D = `num_rows` device rows and the (N, L) `exit_ms`;
        `clip_rate`: the observed rates are clipped to `max_rate` (unbounded rate models)."""
        num_srv, num_exits = exit_ms.shape
        self._num_rows = num_dev = num_rows
        self._rate_cap = max_rate if clip_rate else None
        big = np.float32(_BIG_MS)
        self.observation_space = spaces.Dict(
            {
                "active": spaces.MultiBinary(num_dev),
                "task_bits": spaces.Box(0.0, max_bits, (num_dev,), np.float32),
                "deadline_ms": spaces.Box(0.0, deadline_ms, (num_dev,), np.float32),
                "rate_mbps": spaces.Box(0.0, max_rate, (num_dev, num_srv), np.float32),
                "link": spaces.MultiBinary((num_dev, num_srv)),
                "device_backlog_ms": spaces.Box(0.0, big, (num_dev,), np.float32),
                "server_backlog_ms": spaces.Box(0.0, big, (num_srv,), np.float32),
                "capacity": spaces.Box(0.0, 1.0, (num_srv,), np.float32),
                "exit_ms": spaces.Box(0.0, float(exit_ms.max()), (num_srv, num_exits), np.float32),
                "exit_accuracy": spaces.Box(0.0, 1.0, (num_exits,), np.float32),
            }
        )
        self.action_space = spaces.MultiDiscrete(np.full(num_dev, num_srv * num_exits))

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
        assert self._stepper is not None, "call reset() before step()"
        info = self._stepper.serve(self._compact(action))
        info["action_mask"] = self._action_mask()
        return self._observation(), info["q_sum"], False, False, info

    def _started(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """What ``reset`` returns once ``_stepper`` is built."""
        return self._observation(), {"slot": 0, "action_mask": self._action_mask()}

    @property
    def slot_state(self) -> SlotState:
        """The agent-visible state of the current slot, compact over the active devices."""
        assert self._stepper is not None, "call reset() before reading slot_state"
        return self._stepper.state

    def _action_mask(self) -> np.ndarray:
        """(D, N*L) int8: 1 where a padded device row may take an option this slot (link up;
        every option on an inactive row, whose entry is ignored)."""
        state = self._stepper.state
        num_exits = state.num_exits
        mask = np.ones((self._num_rows, state.num_servers * num_exits), np.int8)
        mask[state.device_ids] = np.repeat(state.link, num_exits, axis=1)
        return mask

    def _compact(self, action: np.ndarray) -> np.ndarray:
        """Action as one option per active device (accepts length M or padded length D)."""
        state = self._stepper.state
        act = np.asarray(action)
        num_active, num_pad = state.num_devices, self._num_rows
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
        state, num_dev = self._stepper.state, self._num_rows
        num_srv = state.num_servers
        ids = state.device_ids

        def padded(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
            out = np.zeros(shape, dtype=np.float32)
            out[ids] = values
            return out

        rate = (
            state.rate_mbps
            if self._rate_cap is None
            else np.minimum(state.rate_mbps, self._rate_cap)
        )
        active = np.zeros(num_dev, dtype=np.int8)
        active[ids] = 1
        link = np.zeros((num_dev, num_srv), dtype=np.int8)
        link[ids] = state.link
        return {
            "active": active,
            "task_bits": padded(state.task_bits, (num_dev,)),
            "deadline_ms": padded(state.deadline_ms, (num_dev,)),
            "rate_mbps": padded(rate, (num_dev, num_srv)),
            "link": link,
            "device_backlog_ms": padded(np.minimum(state.device_backlog_ms, _BIG_MS), (num_dev,)),
            "server_backlog_ms": np.minimum(state.server_backlog_ms, _BIG_MS).astype(np.float32),
            "capacity": state.capacity.astype(np.float32),
            "exit_ms": state.exit_ms.astype(np.float32),
            "exit_accuracy": state.exit_accuracy.astype(np.float32),
        }


class OffloadEnv(SlotEnv):
    """The MEC offloading environment (see the module docstring).

    Args:
        table: candidate exit table (every row is a candidate exit).
        config: network parameters and readings; defaults to `MECConfig()`.

    Raises:
        ExitTableError: a server device type has no latency column in `table`.
    """

    def __init__(self, table: ExitTable, config: MECConfig | None = None) -> None:
        super().__init__(table, config if config is not None else MECConfig())
        cfg = self.config
        self.exit_ms = cfg.server_exit_ms(table)
        self._set_spaces(
            cfg.padded_devices,
            self.exit_ms,
            max_bits=cfg.task_kb[1] * cfg.bits_per_kb,
            deadline_ms=cfg.deadline_ms,
            max_rate=cfg.rate_mbps[1],
        )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an episode: `num_devices` active devices, all links up, empty queues."""
        super().reset(seed=seed)
        network = PaperNetwork(self.config, self.np_random)
        self._stepper = RunStepper(network, self.config, self.exit_ms, self.exit_accuracy)
        return self._started()

    @property
    def slot_draw(self) -> SlotDraw:
        """The current slot's random quantities, true values included (for tests and
        diagnostics; a policy must not read it)."""
        assert self._stepper is not None, "call reset() before reading slot_draw"
        return self._stepper.draw
