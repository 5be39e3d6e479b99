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
from typing import NamedTuple

import numpy as np
from gymnasium.utils import seeding

from ..exit_table import ExitTable
from .carry import carried_state, empty_carry, fcfs_step
from .config import MECConfig
from .dynamics import draw_slot, initial_fading, update_topology
from .env import scoring_rules, server_exit_ms
from .evaluator import (
    as_options,
    batch_score,
    batch_task_rewards,
    candidate_rewards,
    num_carried,
    predicted,
    psi,
    schedule_slot,
)
from .metrics import BatchMetrics, usage_counts
from .state import BatchState, CarriedTasks

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


def batch_greedy(state: BatchState) -> np.ndarray:
    """(K, M) greedy best response device by device, equal to `greedy_decision(state.slot(k))`.

    Devices are placed in the order of their earliest possible arrival (ties by device index);
    each takes the option with the largest gain in its ES's queue value, the sum of the reward
    terms of eq. (9) of that ES's tasks in FCFS order (ties go to the lowest option). Placing
    device m changes only its ES's queue, so round r schedules all N*L options of the r-th
    device of every environment, with the r devices placed before it, as K*N*L partial
    decisions in one FCFS schedule, and sums each candidate ES's terms in the order and
    arithmetic of `ScalarSlot.queue_value` (so the gains, and their ties, are bit-identical).

    Raises:
        ValueError: a device has no link (every device needs at least one).
    """
    num_envs, num_dev = state.num_envs, state.num_devices
    num_exits, num_opt = state.num_exits, state.num_options
    orphan = ~state.link.any(axis=2)
    if orphan.any():
        k, m = np.argwhere(orphan)[0]
        raise ValueError(
            f"device {m} of environment {k} has no link; give every device at least one "
            "link before asking for a greedy decision."
        )
    pred = predicted(state)
    order = np.argsort(pred.arrival.min(axis=2), axis=1, kind="stable")  # earliest arrival
    env = np.arange(num_envs)
    options = np.arange(num_opt)
    option_server = options // num_exits
    decision = np.zeros((num_envs, num_dev), dtype=np.int64)
    values = np.zeros((num_envs, state.num_servers))  # queue value of each ES so far
    fixed = num_carried(state)  # carried tasks (fcfs): fixed columns in front of every queue
    if fixed:
        values = _carried_values(state, pred)
        carried = state.carried
        fixed_server = np.broadcast_to(carried.server[:, None], (num_envs, num_opt, fixed))
        fixed_present = np.broadcast_to(carried.present[:, None], fixed_server.shape)
    for r in range(num_dev):
        dev = order[:, r]  # (K,): the next device of every environment
        # schedule only the devices placed so far and dev, in index order (FCFS ties)
        cols = np.sort(order[:, : r + 1], axis=1)
        col = np.argmax(cols == dev[:, None], axis=1)
        reach = state.link[env, dev][:, option_server]  # (K, N*L): the option's link is up
        cand = np.repeat(decision[env[:, None], cols][:, None], num_opt, axis=1)
        cand[env, :, col] = options
        present = np.ones(cand.shape, dtype=bool)
        present[env, :, col] = reach  # an option over a missing link is not scheduled
        q, arrival = candidate_rewards(state, pred.columns(cols), cand, present)
        if fixed:
            cand = np.concatenate([fixed_server * num_exits, cand], axis=2)
            present = np.concatenate([fixed_present, present], axis=2)
        on_server = present & (cand // num_exits == option_server[:, None])
        fcfs = np.argsort(np.where(present, arrival, np.inf), axis=2, kind="stable")
        terms = np.take_along_axis(np.where(on_server, q, 0.0), fcfs, axis=2)
        value = np.cumsum(terms, axis=2)[:, :, -1]  # sequential, as queue_value adds them
        gain = np.where(reach, value - values[:, option_server], -np.inf)
        best = np.argmax(gain, axis=1)  # first maximum: the lowest option
        decision[env, dev] = best
        values[env, best // num_exits] = value[env, best]
    return decision


def _carried_values(state: BatchState, pred) -> np.ndarray:
    """(K, N) queue value of each ES holding only its carried tasks (the greedy's start)."""
    num_envs = state.num_envs
    none = np.zeros((num_envs, 1, 0), dtype=np.int64)
    q, arrival = candidate_rewards(
        state, pred.columns(none[:, 0]), none, np.ones(none.shape, dtype=bool)
    )
    carried = state.carried
    fcfs = np.argsort(np.where(carried.present, arrival[:, 0], np.inf), axis=1, kind="stable")
    values = np.zeros((num_envs, state.num_servers))
    for n in range(state.num_servers):
        mine = carried.present & (carried.server == n)
        terms = np.take_along_axis(np.where(mine, q[:, 0], 0.0), fcfs, axis=1)
        values[:, n] = np.cumsum(terms, axis=1)[:, -1]  # sequential, as queue_value adds them
    return values


def batch_random(state: BatchState, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """(K, M) uniformly random ES among each device's links and random exit, equal to
    `random_decision(state.slot(k), rngs[k])` (the same draws from each generator).

    Raises:
        ValueError: not one generator per environment.
    """
    if len(rngs) != state.num_envs:
        raise ValueError(
            f"got {len(rngs)} generators for {state.num_envs} environments; pass one per "
            "environment."
        )
    shape = state.link.shape[1:]
    keys, exits = [], []
    for rng in rngs:  # per generator in the order random_decision draws
        keys.append(rng.uniform(size=shape))
        exits.append(rng.integers(0, state.num_exits, state.num_devices))
    server = np.argmax(np.where(state.link, np.stack(keys), -1.0), axis=2)
    return server * state.num_exits + np.stack(exits)


class BatchStepInfo(NamedTuple):
    """Per-environment numbers of one `BatchEnv.step`, (K,) arrays; entry k equals the
    like-named entry of `OffloadEnv.step`'s info."""

    num_tasks: np.ndarray  # (K,) int, tasks generated
    num_success: np.ndarray  # (K,) int, tasks completed within the deadline (eq. (11))
    accuracy_sum: np.ndarray  # (K,) Σ accuracy of the successful tasks
    q_sum: np.ndarray  # (K,) Q of eq. (9), true values
    slot_ms: np.ndarray  # (K,) slot length τ, ms
    exit_tasks: np.ndarray  # (K, L) int, tasks per candidate exit (0-based row of the table)
    exit_success: np.ndarray  # (K, L) int, of those, successful tasks
    server_tasks: np.ndarray  # (K, N) int, tasks per ES


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
        self.exit_ms = np.stack([server_exit_ms(table, cfg) for cfg in self.configs])  # (K, N, L)
        self.exit_accuracy = table.accuracy.astype(np.float64)
        self.rules = scoring_rules(first)
        self.slot_ms = np.array([cfg.slot_ms for cfg in self.configs])
        self.deadline_ms = np.array([cfg.deadline_ms for cfg in self.configs])
        # the fixed topology of every environment: the first M of D padded devices, all links up
        self._active = np.arange(first.padded_devices) < first.num_devices
        self._link = np.ones((first.padded_devices, first.num_servers), dtype=bool)
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
        if len(seeds) != self.num_envs:
            raise ValueError(
                f"got {len(seeds)} seeds for {self.num_envs} environments; pass one per "
                "environment."
            )
        # gymnasium.Env.reset(seed=) seeds np_random this way
        self._rngs = [seeding.np_random(operator.index(seed))[0] for seed in seeds]
        cfg = self.configs[0]
        self._device_free = np.zeros((self.num_envs, cfg.num_devices))
        self._server_free = np.zeros((self.num_envs, cfg.num_servers))
        self._carry = empty_carry(self.num_envs) if cfg.cross_slot_queue == "fcfs" else None
        self._fading = [
            initial_fading(c, rng) for c, rng in zip(self.configs, self._rngs, strict=True)
        ]
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
        server, exit_index = np.divmod(dec, state.num_exits)
        env = np.arange(num_envs)[:, None]
        dev = np.arange(num_dev)
        rules = self.rules
        backlog = state.device_backlog_ms
        origin = backlog if rules.from_transmission else np.zeros_like(backlog)
        deadline_abs = origin + state.deadline_ms
        tx_end = backlog + state.task_bits / (self._rate_true[env, dev, server] * 1e3)  # (1), (6)
        arrival = np.where(tx_end < deadline_abs, tx_end, np.inf) if rules.drop_late else tx_end
        exec_ms = (
            self.exit_ms[env, server, exit_index] * self._jitter / state.capacity[env, server]
        )  # eq. (4)
        if self._carry is not None:
            info, free = self._fcfs_step(dec, arrival, exec_ms, origin)
        else:
            info, free = self._free_at_step(dec, arrival, exec_ms, origin, deadline_abs)
        # eq. (6): the uplink stays busy until the transmission ends (or the deadline, if dropped)
        if rules.drop_late:
            tx_end = np.where(backlog < deadline_abs, np.minimum(tx_end, deadline_abs), backlog)
        self._device_free = np.maximum(tx_end - self.slot_ms[:, None], 0.0)
        self._server_free = np.maximum(free - self.slot_ms[:, None], 0.0)
        for cfg, rng in zip(
            self.configs, self._rngs, strict=True
        ):  # no change, but keeps the streams aligned
            update_topology(cfg, rng, self._active, self._link)
        self._new_slot()
        return info

    def _free_at_step(self, dec, arrival, exec_ms, origin, deadline_abs):
        """(info, ES free times) of cross_slot_queue="free_at": the slot's tasks alone."""
        state, rules = self._state, self.rules
        num_envs, num_dev = dec.shape
        server, exit_index = np.divmod(dec, state.num_exits)
        finish, free = schedule_slot(
            arrival,
            exec_ms,
            server,
            np.ones(dec.shape, dtype=bool),
            state.server_backlog_ms,
            deadline_abs,
            rules.drop_late,
        )
        completion = finish - origin  # eq. (8)
        success = completion <= state.deadline_ms  # eq. (11), as a metric
        accuracy = self.exit_accuracy[exit_index]
        q = accuracy * psi(completion, state.deadline_ms, rules.psi_scale)  # eq. (9)
        info = BatchStepInfo(
            num_tasks=np.full(num_envs, num_dev),
            num_success=success.sum(axis=1),
            accuracy_sum=np.where(success, accuracy, 0.0).sum(axis=1),
            q_sum=q.sum(axis=1),
            slot_ms=self.slot_ms.copy(),
            **usage_counts(exit_index, server, success, None, state.num_exits, state.num_servers),
        )
        return info, free

    def _fcfs_step(self, dec, arrival, exec_ms, origin):
        """(info, ES free times) of cross_slot_queue="fcfs" (`offload.sim.carry`): the info
        counts the tasks whose outcome this step fixes."""
        state, rules = self._state, self.rules
        num_envs, num_dev = dec.shape
        server, exit_index = np.divmod(dec, state.num_exits)
        env = np.arange(num_envs)[:, None]
        new = CarriedTasks(
            np.broadcast_to(np.arange(num_dev), dec.shape),
            server,
            exit_index,
            arrival,
            exec_ms,
            origin,
            state.deadline_ms,
            np.ones(dec.shape, dtype=bool),
        )
        served = fcfs_step(
            self._carry[0],
            self._carry[1],
            new,
            self.exit_ms[env, server, exit_index] / state.capacity[env, server],
            state.server_backlog_ms,
            self.slot_ms,
            self.exit_accuracy,
            rules.drop_late,
            rules.psi_scale,
        )
        self._carry = (served.carried, served.carried_predicted_ms)
        info = BatchStepInfo(
            num_tasks=served.final.sum(axis=1),
            num_success=served.success.sum(axis=1),
            accuracy_sum=served.accuracy.sum(axis=1),
            q_sum=served.q.sum(axis=1),
            slot_ms=self.slot_ms.copy(),
            **usage_counts(
                served.tasks.exit_index,
                served.tasks.server,
                served.success,
                served.final,
                state.num_exits,
                state.num_servers,
            ),
        )
        return info, served.server_free_ms

    def _new_slot(self) -> None:
        num_dev = self.configs[0].num_devices
        draws = [
            draw_slot(cfg, rng, fading)
            for cfg, rng, fading in zip(self.configs, self._rngs, self._fading, strict=True)
        ]
        self._fading = [draw.fading for draw in draws]
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
