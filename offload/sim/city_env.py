"""The city network (`offload.sim.city`) as an environment: the same slot step as every other
scenario (`offload.sim.step.serve_one` -> `true_slot`, eqs. (1), (4), (6)-(9), (11)).

Description:
    Each slot, every active device that reaches at least one ES (`CityNetwork.draw`)
    generates one task; the policy gives it one option o = n*L + l over the ES it reaches.
    Between slots devices move, leave and join, and each ES's capacity moves
    (`CityNetwork.advance`); uplink backlogs of devices that stay carry over, ES backlogs too.

State (observation): the `SlotState` of the slot, compact over the active covered devices
    (``device_ids`` = their global ids; ``link`` their reachable ES this slot; ``exit_ms`` one
    table column per ES). No padded dictionary: at M = 1,000 and N = 50 it would cost more
    than the step; the GRLE actors build their sparse graph from the state
    (`offload.agents.sparse`).

Action: (M,) int, one option per device of the slot state. An option over an ES the device
    does not reach this slot loses the task (earns 0, counted in ``info["num_lost"]``), as
    in `OffloadEnv`; ``info["action_mask"]`` (M, N*L) says which options are usable.

Reward: the true Q of eq. (9). Metrics: ``info["outcome"]`` (`SlotOutcome`), as `OffloadEnv`.

Signatures follow Gymnasium (``reset(*, seed, options) -> (obs, info)``, ``step(action) ->
(obs, reward, terminated, truncated, info)``, the last two always False: an episode never
ends), but `CityEnv` is not a ``gym.Env``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exit_table import ExitTable
from .city import CityConfig, CityNetwork, CitySlot
from .env import scoring_rules
from .evaluator import check_decisions
from .state import SlotState
from .step import serve_one

__all__ = ["CityEnv"]


class CityEnv:
    """A city network driven slot by slot (see the module docstring).

    Args:
        table: candidate exit table with a latency column per name in ``config.server_devices``.
        config: the city; defaults to `CityConfig()` (M = 1,000, N = 50, 5 nearest ES).

    Raises:
        ExitTableError: a server device type has no latency column in `table`.
    """

    def __init__(self, table: ExitTable, config: CityConfig | None = None) -> None:
        self.config = config if config is not None else CityConfig()
        self.table = table
        for kind in self.config.server_devices:  # fail here, not at reset, on a bad column
            self.table.latency_of(kind)
        self.exit_accuracy = table.accuracy.astype(np.float64)
        self.rules = scoring_rules(self.config.task)
        self.network: CityNetwork | None = None
        self._state: SlotState | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[SlotState, dict[str, Any]]:
        """Place servers and devices (all devices active), empty queues; the first slot."""
        cfg = self.config
        self.network = CityNetwork(cfg, self.table, np.random.default_rng(seed))
        self.device_free_ms = np.zeros(cfg.num_devices)  # uplink busy time after the slot start
        self.server_free_ms = np.zeros(cfg.num_servers)  # ES busy time after the slot start
        self.slot = 0
        self._new_slot()
        return self._state, {"slot": 0, "action_mask": self.action_mask()}

    def step(self, action: np.ndarray) -> tuple[SlotState, float, bool, bool, dict[str, Any]]:
        """Serve the current slot with `action` and advance to the next slot.

        Raises:
            AssertionError: `reset()` was not called.
            ValueError: the action does not have one integer option in [0, N*L) per device.
        """
        assert self._state is not None, "call reset() before step()"
        cfg, state, draw = self.config, self._state, self._draw
        decision = check_decisions(state, np.asarray(action))[0]
        ids = state.device_ids
        served = serve_one(
            state,
            decision,
            rate_true_mbps=draw.rate_true_mbps[ids],
            jitter=draw.jitter[ids],
            slot_ms=cfg.task.slot_ms,
        )
        slot_ms = cfg.task.slot_ms
        self.device_free_ms[ids] = served.device_free_ms
        self.device_free_ms = np.maximum(self.device_free_ms - slot_ms, 0.0)
        self.server_free_ms = np.maximum(served.server_free_ms - slot_ms, 0.0)
        outcome = served.outcome
        info = {
            "slot": self.slot,
            "outcome": outcome,
            "num_tasks": int(outcome.device_ids.size),
            "num_success": int(outcome.success.sum()),
            "num_lost": int((~served.linked).sum()),
            "accuracy_sum": float(outcome.accuracy.sum()),
            "q_sum": float(outcome.q.sum()),
            "predicted_q": served.predicted_q,
            "slot_ms": slot_ms,
        }
        self.network.advance()
        self.slot += 1
        self._new_slot()
        info["action_mask"] = self.action_mask()
        return self._state, float(outcome.q.sum()), False, False, info

    @property
    def slot_state(self) -> SlotState:
        """The agent-visible state of the current slot (active covered devices)."""
        assert self._state is not None, "call reset() before reading slot_state"
        return self._state

    @property
    def slot_draw(self) -> CitySlot:
        """The current slot's draws for all D devices, true rates included (tests and
        diagnostics; a policy must not read it)."""
        assert self._state is not None, "call reset() before reading slot_draw"
        return self._draw

    def action_mask(self) -> np.ndarray:
        """(M, N*L) int8, 1 where the slot state's device m may take option o (it reaches
        ES o // L this slot)."""
        state = self.slot_state
        return np.repeat(state.link, state.num_exits, axis=1).astype(np.int8)

    def _new_slot(self) -> None:
        net = self.network
        self._draw = draw = net.draw()
        self.device_free_ms[draw.joined] = 0.0
        ids = np.flatnonzero(
            draw.link.any(axis=1)
        )  # active (inactive rows have no link) and covered
        self._state = SlotState(
            device_ids=ids,
            task_bits=draw.task_bits[ids],
            deadline_ms=np.full(ids.size, self.config.task.deadline_ms),
            rate_mbps=draw.rate_est_mbps[ids],
            link=draw.link[ids],
            device_backlog_ms=self.device_free_ms[ids].copy(),
            server_backlog_ms=self.server_free_ms.copy(),
            capacity=draw.capacity,
            exit_ms=net.exit_ms,
            exit_accuracy=self.exit_accuracy,
            rules=self.rules,
        )
