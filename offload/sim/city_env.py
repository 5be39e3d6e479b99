"""The city network (`offload.sim.city`) as an environment: the same slot step as every other
scenario (`offload.sim.step.OneRun` -> `true_slot`, eqs. (1), (4), (6)-(9), (11)).

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
ends), but `CityEnv` is not a ``gym.Env``: `CityGymEnv` is, the same adapter as `OffloadEnv`
(`SlotEnv`: padded dict observations over the D devices, padded or compact actions, a padded
action mask) over a `CityEnv`, at the cost of the padding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exit_table import ExitTable
from .city import CityConfig, CityNetwork, CitySlot, mean_rate_mbps
from .env import SlotEnv
from .evaluator import check_decisions
from .state import SlotState
from .step import RunStepper

__all__ = ["CityEnv", "CityGymEnv"]

#: `CityGymEnv` observes rates up to that of the nearest distance with this much more SNR, dB
#: (shadowing and fading gain of 10^4; above it the observed rate is clipped)
_RATE_MARGIN_DB = 40.0


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
        self._stepper: RunStepper | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[SlotState, dict[str, Any]]:
        """Place servers and devices (all devices active), empty queues; the first slot."""
        cfg = self.config
        network = CityNetwork(cfg, self.table, np.random.default_rng(seed))
        self._stepper = RunStepper(network, cfg.task, network.exit_ms, self.exit_accuracy)
        return self._stepper.state, {"slot": 0, "action_mask": self.action_mask()}

    def step(self, action: np.ndarray) -> tuple[SlotState, float, bool, bool, dict[str, Any]]:
        """Serve the current slot with `action` and advance to the next slot.

        Raises:
            AssertionError: `reset()` was not called.
            ValueError: the action does not have one integer option in [0, N*L) per device.
        """
        assert self._stepper is not None, "call reset() before step()"
        info = self._stepper.serve(check_decisions(self._stepper.state, np.asarray(action))[0])
        info["action_mask"] = self.action_mask()
        return self._stepper.state, info["q_sum"], False, False, info

    @property
    def network(self) -> CityNetwork | None:
        """The city (None before `reset`)."""
        return None if self._stepper is None else self._stepper.network

    @property
    def slot_state(self) -> SlotState:
        """The agent-visible state of the current slot (active covered devices)."""
        assert self._stepper is not None, "call reset() before reading slot_state"
        return self._stepper.state

    @property
    def slot_draw(self) -> CitySlot:
        """The current slot's draws for all D devices, true rates included (tests and
        diagnostics; a policy must not read it)."""
        assert self._stepper is not None, "call reset() before reading slot_draw"
        return self._stepper.draw

    def action_mask(self) -> np.ndarray:
        """(M, N*L) int8, 1 where the slot state's device m may take option o (it reaches
        ES o // L this slot)."""
        state = self.slot_state
        return np.repeat(state.link, state.num_exits, axis=1).astype(np.int8)


class CityGymEnv(SlotEnv):
    """The city as a ``gym.Env``: the `SlotEnv` adapter over the city's `RunStepper`
    (observations padded to the D = ``num_devices`` rows, ``active`` marking the active covered
    devices; observed rates clipped at that of ``min_distance_m`` with 40 dB more SNR). Same
    seed, same trace as `CityEnv`.

    Args:
        table: candidate exit table with a latency column per name in ``config.server_devices``.
        config: the city; defaults to `CityConfig()`.

    Raises:
        ExitTableError: a server device type has no latency column in `table`.
    """

    def __init__(self, table: ExitTable, config: CityConfig | None = None) -> None:
        super().__init__(table, config if config is not None else CityConfig())
        cfg = self.config
        self._set_spaces(
            cfg.num_devices,
            cfg.task.server_exit_ms(table, cfg.server_kinds),
            max_bits=cfg.task.task_kb[1] * cfg.task.bits_per_kb,
            deadline_ms=cfg.task.deadline_ms,
            max_rate=float(mean_rate_mbps(cfg, cfg.min_distance_m, _RATE_MARGIN_DB)),
            clip_rate=True,
        )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Place servers and devices, empty queues; the first slot (as `CityEnv.reset`)."""
        super().reset(seed=seed)
        network = CityNetwork(self.config, self.table, np.random.default_rng(seed))
        self._stepper = RunStepper(network, self.config.task, network.exit_ms, self.exit_accuracy)
        return self._started()
