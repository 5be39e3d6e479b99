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
`dynamic_topology`.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from gymnasium.utils import seeding

from ..exit_table import ExitTable
from .config import MECConfig
from .dynamics import draw_slot, initial_fading, update_topology
from .evaluator import option_indices, psi, schedule_slot
from .metrics import Metrics, MetricsAccumulator
from .state import ScoringRules, SlotState

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
    "late_policy",
    "completion_origin",
)


@dataclass(frozen=True)
class BatchState:
    """K slot states with the same M, N, L (leading axis = environment); the batched
    `SlotState`, over devices 0..M-1 of every environment. All arrays are float64 unless noted."""

    task_bits: np.ndarray  # (K, M) task size d, bits
    deadline_ms: np.ndarray  # (K, M) deadline δ, ms
    rate_mbps: np.ndarray  # (K, M, N) uplink rate r as the policy knows it, Mbit/s
    link: np.ndarray  # (K, M, N) bool, device m can reach ES n this slot
    device_backlog_ms: np.ndarray  # (K, M) time until device m's uplink is free (eq. (6)), ms
    server_backlog_ms: np.ndarray  # (K, N) time until ES n has finished its queue (eq. (7)), ms
    capacity: np.ndarray  # (K, N) available fraction of ES n's capacity, in (0, 1]
    exit_ms: np.ndarray  # (K, N, L) nominal computation time at full capacity, ms
    exit_accuracy: np.ndarray  # (L,) accuracy φ_l (the same table for all environments)
    rules: ScoringRules  # reward readings, shared by all environments

    @property
    def num_envs(self) -> int:
        """K, environments."""
        return int(self.task_bits.shape[0])

    @property
    def num_devices(self) -> int:
        """M, devices of every environment."""
        return int(self.task_bits.shape[1])

    @property
    def num_servers(self) -> int:
        """N, edge servers."""
        return int(self.capacity.shape[1])

    @property
    def num_exits(self) -> int:
        """L, candidate exits."""
        return int(self.exit_accuracy.shape[0])

    @property
    def num_options(self) -> int:
        """N*L options per device."""
        return self.num_servers * self.num_exits

    def slot(self, k: int) -> SlotState:
        """The `SlotState` of environment k (device_ids = 0..M-1; arrays are views)."""
        return SlotState(
            device_ids=np.arange(self.num_devices),
            task_bits=self.task_bits[k],
            deadline_ms=self.deadline_ms[k],
            rate_mbps=self.rate_mbps[k],
            link=self.link[k],
            device_backlog_ms=self.device_backlog_ms[k],
            server_backlog_ms=self.server_backlog_ms[k],
            capacity=self.capacity[k],
            exit_ms=self.exit_ms[k],
            exit_accuracy=self.exit_accuracy,
            rules=self.rules,
        )

    @classmethod
    def stack(cls, states: Sequence[SlotState]) -> BatchState:
        """Stack slot states into one batch (the inverse of `slot`; device ids are dropped).

        Raises:
            ValueError: no states, or states that differ in M, N, L, rules or exit_accuracy.
        """
        if len(states) == 0:
            raise ValueError("BatchState.stack got no states; pass at least one SlotState.")
        first = states[0]
        shape = (first.num_devices, first.num_servers, first.num_exits)
        for k, state in enumerate(states):
            other = (state.num_devices, state.num_servers, state.num_exits)
            if other != shape:
                raise ValueError(
                    f"state {k} has (M, N, L) = {other} but state 0 has {shape}; stack only "
                    "slot states of the same size (score the others separately)."
                )
            if state.rules != first.rules:
                raise ValueError(
                    f"state {k} has rules {state.rules} but state 0 has {first.rules}; stack "
                    "only slot states with the same reward readings."
                )
            if not np.array_equal(state.exit_accuracy, first.exit_accuracy):
                raise ValueError(
                    f"state {k} has other exit accuracies than state 0; stack only slot "
                    "states built from the same exit table."
                )
        return cls(
            task_bits=np.stack([s.task_bits for s in states]).astype(np.float64, copy=False),
            deadline_ms=np.stack([s.deadline_ms for s in states]).astype(np.float64, copy=False),
            rate_mbps=np.stack([s.rate_mbps for s in states]).astype(np.float64, copy=False),
            link=np.stack([s.link for s in states]).astype(bool, copy=False),
            device_backlog_ms=np.stack([s.device_backlog_ms for s in states]).astype(
                np.float64, copy=False
            ),
            server_backlog_ms=np.stack([s.server_backlog_ms for s in states]).astype(
                np.float64, copy=False
            ),
            capacity=np.stack([s.capacity for s in states]).astype(np.float64, copy=False),
            exit_ms=np.stack([s.exit_ms for s in states]).astype(np.float64, copy=False),
            exit_accuracy=np.asarray(first.exit_accuracy, dtype=np.float64),
            rules=first.rules,
        )


class _Predicted(NamedTuple):
    """What eqs. (1), (4), (6) predict for a `BatchState`, as `task_rewards` computes it, over
    C device columns per environment (all M devices, or a subset for a partial decision)."""

    deadline: np.ndarray  # (K, C) deadline δ
    origin: np.ndarray  # (K, C) instant from which completion is counted (eq. (8))
    deadline_abs: np.ndarray  # (K, C) absolute deadline after the slot start
    arrival: np.ndarray  # (K, C, N) arrival at each ES; inf without link or (drop) too late
    compute: np.ndarray  # (K, N*L) computation time of option o = n*L + l, capacity applied

    def columns(self, devices: np.ndarray) -> _Predicted:
        """The same predictions over the devices (K, C') of each environment."""
        env = np.arange(devices.shape[0])[:, None]
        return _Predicted(
            self.deadline[env, devices],
            self.origin[env, devices],
            self.deadline_abs[env, devices],
            self.arrival[env, devices],
            self.compute,
        )


def _predict(state: BatchState) -> _Predicted:
    rules = state.rules
    backlog = state.device_backlog_ms
    origin = backlog if rules.from_transmission else np.zeros_like(backlog)
    deadline_abs = origin + state.deadline_ms
    with np.errstate(divide="ignore"):
        tx = state.task_bits[:, :, None] / (state.rate_mbps * 1e3)  # eq. (1), bits / (bit/ms)
    arrival = backlog[:, :, None] + np.where(state.link, tx, np.inf)  # eq. (6)
    if rules.drop_late:
        arrival[arrival >= deadline_abs[:, :, None]] = np.inf
    compute = (state.exit_ms / state.capacity[:, :, None]).reshape(state.num_envs, -1)  # eq. (4)
    return _Predicted(state.deadline_ms, origin, deadline_abs, arrival, compute)


def _rewards(
    state: BatchState, pred: _Predicted, dec: np.ndarray, present: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(K, S, C) reward terms Φ ψ(t) of eq. (9) of checked decisions `dec` over the device
    columns of `pred` (no missing-link or absence masking), and the arrivals they imply."""
    num_envs, num_cand, num_col = dec.shape
    num_srv = state.num_servers
    rows = num_envs * num_cand
    server, exit_index = np.divmod(dec, state.num_exits)
    env = np.arange(num_envs)[:, None, None]
    pick = (env * num_col + np.arange(num_col)) * num_srv + server  # flat (k, column, n)
    arrival = pred.arrival.ravel()[pick]
    exec_ms = pred.compute.ravel()[env * state.num_options + dec]
    finish, _ = schedule_slot(
        arrival.reshape(rows, num_col),
        exec_ms.reshape(rows, num_col),
        server.reshape(rows, num_col),
        present.reshape(rows, num_col),
        np.repeat(state.server_backlog_ms, num_cand, axis=0),
        np.repeat(pred.deadline_abs, num_cand, axis=0),
        state.rules.drop_late,
    )
    completion = finish.reshape(dec.shape) - pred.origin[:, None]  # eq. (8)
    q = state.exit_accuracy[exit_index] * psi(
        completion, pred.deadline[:, None], state.rules.psi_scale
    )  # eq. (9)
    return q, arrival


def _as_options(
    decisions: np.ndarray, shape: tuple[int | None, ...], state: BatchState
) -> np.ndarray:
    """`decisions` as int64 of `shape` (None = any length); ValueError if malformed."""
    dec = np.asarray(decisions)
    if dec.ndim != len(shape) or any(
        s is not None and s != d for s, d in zip(shape, dec.shape, strict=True)
    ):
        want = ", ".join("S" if s is None else str(s) for s in shape)
        raise ValueError(
            f"decisions have shape {dec.shape}; pass an int array of shape ({want}): one "
            "option n*L+l per environment (and candidate) and device."
        )
    return option_indices(dec, state.num_servers, state.num_exits)


def batch_task_rewards(
    state: BatchState, decisions: np.ndarray, present: np.ndarray | None = None
) -> np.ndarray:
    """(K, S, M) predicted reward term Φ ψ(t) (eq. (9)) of each task; -inf on a missing link.

    Equal to `task_rewards(state.slot(k), decisions[k], present[k])` for every k: the K*S
    candidates go through one FCFS schedule (eqs. (7)-(8)) with per-row ES backlogs.

    Args:
        state: K slot states.
        decisions: int (K, S, M), option o = n*L + l per device.
        present: (K, S, M) bool, the devices each partial decision includes (others score 0
            and take no resources); None means all.

    Raises:
        ValueError: decisions or present of the wrong shape, options outside [0, N*L).
    """
    dec = _as_options(decisions, (state.num_envs, None, state.num_devices), state)
    all_present = present is None
    if all_present:
        present = np.ones(dec.shape, dtype=bool)
    else:
        present = np.asarray(present, dtype=bool)
        if present.shape != dec.shape:
            raise ValueError(
                f"present has shape {present.shape}; pass a bool array of the decisions' "
                f"shape {dec.shape}, or None."
            )
    q, _ = _rewards(state, _predict(state), dec, present)
    server = dec // state.num_exits
    env = np.arange(state.num_envs)[:, None, None]
    missing = ~state.link[env, np.arange(state.num_devices), server]
    if not all_present:
        q[~present] = 0.0
        missing &= present
    q[missing] = -np.inf
    return q


def batch_score(state: BatchState, decisions: np.ndarray) -> np.ndarray:
    """(K, S) predicted Q of eq. (9) of S candidate decisions (K, S, M) in each environment,
    equal to `score_decisions(state.slot(k), decisions[k])`; -inf where a missing link is used.

    Raises:
        ValueError: decisions of the wrong shape or with options outside [0, N*L).
    """
    return batch_task_rewards(state, decisions).sum(axis=2)


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
    pred = _predict(state)
    order = np.argsort(pred.arrival.min(axis=2), axis=1, kind="stable")  # earliest arrival
    env = np.arange(num_envs)
    options = np.arange(num_opt)
    option_server = options // num_exits
    decision = np.zeros((num_envs, num_dev), dtype=np.int64)
    values = np.zeros((num_envs, state.num_servers))  # queue value of each ES so far
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
        q, arrival = _rewards(state, pred.columns(cols), cand, present)
        on_server = present & (cand // num_exits == option_server[:, None])
        fcfs = np.argsort(np.where(present, arrival, np.inf), axis=2, kind="stable")
        terms = np.take_along_axis(np.where(on_server, q, 0.0), fcfs, axis=2)
        value = np.cumsum(terms, axis=2)[:, :, -1]  # sequential, as queue_value adds them
        gain = np.where(reach, value - values[:, option_server], -np.inf)
        best = np.argmax(gain, axis=1)  # first maximum: the lowest option
        decision[env, dev] = best
        values[env, best // num_exits] = value[env, best]
    return decision


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
        self.exit_ms = np.stack(
            [
                cfg.compute_scale * np.stack([table.latency_of(dev) for dev in cfg.server_devices])
                for cfg in self.configs
            ]
        )  # (K, N, L), as OffloadEnv.exit_ms per environment
        self.exit_accuracy = table.accuracy.astype(np.float64)
        self.rules = ScoringRules(
            psi_scale=2.0 if first.psi_form == "doubled" else 1.0,
            drop_late=first.late_policy == "drop",
            from_transmission=first.completion_origin == "transmission",
        )
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
        dec = _as_options(decisions, (num_envs, num_dev), state)
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
        )
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
        )


class BatchMetrics:
    """Adds up `BatchEnv.step` infos; `result()` gives the Section VI-D measures of every
    environment, equal to a `MetricsAccumulator` fed with that environment's infos."""

    def __init__(self, num_envs: int) -> None:
        self.slots = 0
        self.tasks = np.zeros(num_envs, dtype=np.int64)
        self.successes = np.zeros(num_envs, dtype=np.int64)
        self.accuracy_sum = np.zeros(num_envs)
        self.q_sum = np.zeros(num_envs)
        self.elapsed_ms = np.zeros(num_envs)

    def add(self, info: BatchStepInfo) -> None:
        """Count one slot of every environment."""
        self.slots += 1
        self.tasks += info.num_tasks
        self.successes += info.num_success
        self.accuracy_sum += info.accuracy_sum
        self.q_sum += info.q_sum
        self.elapsed_ms += info.slot_ms

    def result(self) -> list[Metrics]:
        """One `Metrics` per environment (mean_normalised_reward is nan: eq. (17) is not
        computed in batch)."""
        results = []
        for k in range(len(self.tasks)):
            acc = MetricsAccumulator()  # the same formulas, from this environment's totals
            acc.slots = self.slots
            acc.tasks = int(self.tasks[k])
            acc.successes = int(self.successes[k])
            acc.accuracy_sum = float(self.accuracy_sum[k])
            acc.q_sum = float(self.q_sum[k])
            acc.elapsed_ms = float(self.elapsed_ms[k])
            results.append(acc.result())
        return results
