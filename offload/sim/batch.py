"""Lockstep simulation of K independent MEC networks with the same M, N and L.

The experiments run many independent runs (scenario, slot length τ, seed) of the same network
size. `BatchEnv` steps K of them together: the random draws stay per environment (one
generator each, called in the order `OffloadEnv` calls it, so every environment sees exactly
the tasks and channels of `OffloadEnv(table, configs[k])` reset with `seeds[k]`), and the
rest -- the true completion times of eqs. (1), (4)-(8) with the FCFS schedule, the rewards of
eq. (9) and the backlog updates -- is computed for all K environments at once with one
`schedule_slot` call. `batch_task_rewards`, `batch_score`, `batch_greedy` and `batch_random`
are the batched counterparts of `task_rewards`, `score_decisions`, `greedy_decision` and
`random_decision` and give the same numbers for every environment.

Only fixed topologies are batched (all M devices active, all links up); use `OffloadEnv` for
`dynamic_topology`. Under ``cross_slot_queue="fcfs"`` every environment carries its tasks in
transit with `offload.sim.carry`, as `OffloadEnv` does (the same function, K rows at once).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np
from gymnasium.utils import seeding

from ..exit_table import ExitTable
from .baselines import batch_greedy, batch_random
from .carry import carried_state, empty_carry
from .config import MECConfig
from .dynamics import PaperNetwork
from .evaluator import as_options, batch_score, batch_task_rewards
from .metrics import BatchMetrics, BatchStepInfo, usage_counts
from .state import BatchState, check_one_per_env
from .step import true_slot

__all__ = [
    "BatchEnv",
    "BatchMetrics",
    "BatchState",
    "BatchStepInfo",
    "batch_greedy",
    "batch_random",
    "batch_score",
    "batch_task_rewards",
]

#: config fields that every environment of a `BatchEnv` must share
_SHARED_FIELDS = (
    "num_devices",
    "padded_devices",
    "num_servers",
    "psi_form",
    "psi_steepness",
    "reward_form",
    "late_policy",
    "completion_origin",
    "cross_slot_queue",
)


class BatchEnv:
    """K MEC offloading environments stepped in lockstep (see the module docstring).

    Environment k behaves exactly as `OffloadEnv(table, configs[k])` reset with `seeds[k]`:
    same slot states and same step numbers. There are no observation dicts and no predicted
    Q; the state is a `BatchState` and the step returns a `BatchStepInfo`.

    Args:
        table: candidate exit table (every row is a candidate exit).
        configs: one config per environment; they may differ in scenario, slot length,
            compute scale, server types, rate model and so on, but must share
            num_devices, padded_devices, num_servers and the reward readings (psi_form,
            late_policy, completion_origin), and none may have dynamic_topology.

    Raises:
        ValueError: no configs, configs that differ in a shared field, or dynamic_topology.
        ExitTableError: a server device type has no latency column in `table`.
    """

    def __init__(self, table: ExitTable, configs: Sequence[MECConfig]) -> None:
        if len(configs) == 0:
            raise ValueError("BatchEnv got no configs; pass one MECConfig per environment.")
        first = configs[0]
        for k, cfg in enumerate(configs):
            if cfg.dynamic_topology:
                raise ValueError(
                    f"configs[{k}] has dynamic_topology=True; BatchEnv batches fixed "
                    "topologies only: use OffloadEnv for dynamic topology."
                )
            for name in _SHARED_FIELDS:
                if getattr(cfg, name) != getattr(first, name):
                    raise ValueError(
                        f"configs[{k}].{name}={getattr(cfg, name)!r} differs from "
                        f"configs[0].{name}={getattr(first, name)!r}; batch only configs "
                        f"that share {', '.join(_SHARED_FIELDS)}."
                    )
        self.configs = tuple(configs)
        self.table = table
        self.exit_ms = np.stack([cfg.server_exit_ms(table) for cfg in self.configs])  # (K, N, L)
        self.exit_accuracy = table.accuracy.astype(np.float64)
        self.rules = first.scoring_rules
        self.slot_ms = np.array([cfg.slot_ms for cfg in self.configs])
        self.deadline_ms = np.array([cfg.deadline_ms for cfg in self.configs])
        self._state: BatchState | None = None

    @property
    def num_envs(self) -> int:
        """K, environments."""
        return len(self.configs)

    @property
    def state(self) -> BatchState:
        """The agent-visible state of the current slot of every environment."""
        assert self._state is not None, "call reset() before reading state"
        return self._state

    def reset(self, seeds: Sequence[int]) -> BatchState:
        """Start an episode in every environment, seeded as `OffloadEnv.reset(seed=seeds[k])`:
        `num_devices` active devices, all links up, empty queues.

        Raises:
            ValueError: not one seed per environment.
        """
        check_one_per_env(seeds, self.num_envs, "seeds")
        # gymnasium.Env.reset(seed=) seeds np_random this way
        rngs = [seeding.np_random(operator.index(seed))[0] for seed in seeds]
        self._networks = [
            PaperNetwork(cfg, rng) for cfg, rng in zip(self.configs, rngs, strict=True)
        ]
        cfg = self.configs[0]
        self._device_free = np.zeros((self.num_envs, cfg.num_devices))
        self._server_free = np.zeros((self.num_envs, cfg.num_servers))
        self._carry = empty_carry(self.num_envs) if cfg.cross_slot_queue == "fcfs" else None
        self._new_slot()
        return self.state

    def step(self, decisions: np.ndarray) -> BatchStepInfo:
        """Apply one decision per environment to the current slot and advance to the next.

        Args:
            decisions: int (K, M), option o = n*L + l per environment and device (every option
                is valid: the topology is fixed with all links up).

        Raises:
            AssertionError: `reset()` was not called.
            ValueError: decisions of the wrong shape or with an option outside [0, N*L).
        """
        assert self._state is not None, "call reset() before step()"
        state = self._state
        num_envs, num_dev = state.num_envs, state.num_devices
        dec = as_options(decisions, (num_envs, num_dev), state)
        res = true_slot(
            state,
            dec,
            rate_true_mbps=self._rate_true,
            jitter=self._jitter,
            linked=None,  # a fixed topology: every link is up
            slot_ms=self.slot_ms,
            device_ids=np.broadcast_to(np.arange(num_dev), dec.shape),
            carry=self._carry,
        )
        self._carry = res.carry
        counted = None if res.carry is None else res.final  # free_at: every task is final
        info = BatchStepInfo(
            num_tasks=res.final.sum(axis=1),
            num_success=res.success.sum(axis=1),
            accuracy_sum=res.accuracy.sum(axis=1),
            q_sum=res.q.sum(axis=1),
            slot_ms=self.slot_ms.copy(),
            **usage_counts(
                res.tasks.exit_index,
                res.tasks.server,
                res.success,
                counted,
                state.num_exits,
                state.num_servers,
            ),
        )
        self._device_free = np.maximum(res.device_free_ms - self.slot_ms[:, None], 0.0)
        self._server_free = np.maximum(res.server_free_ms - self.slot_ms[:, None], 0.0)
        for net in self._networks:  # no change, but keeps the streams aligned
            net.advance()
        self._new_slot()
        return info

    def _new_slot(self) -> None:
        num_dev = self.configs[0].num_devices
        draws = [net.draw() for net in self._networks]
        self._rate_true = np.stack([draw.rate_true_mbps[:num_dev] for draw in draws])
        self._jitter = np.stack([draw.jitter[:num_dev] for draw in draws])
        self._state = BatchState(
            task_bits=np.stack([draw.task_bits[:num_dev] for draw in draws]),
            deadline_ms=np.repeat(self.deadline_ms[:, None], num_dev, axis=1),
            rate_mbps=np.stack([draw.rate_est_mbps[:num_dev] for draw in draws]),
            link=np.ones((self.num_envs, num_dev, self.configs[0].num_servers), dtype=bool),
            device_backlog_ms=self._device_free,
            server_backlog_ms=self._server_free,
            capacity=np.stack([draw.capacity for draw in draws]),
            exit_ms=self.exit_ms,
            exit_accuracy=self.exit_accuracy,
            rules=self.rules,
            carried=None if self._carry is None else carried_state(*self._carry),
        )
