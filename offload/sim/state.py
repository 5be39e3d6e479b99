"""Data types of one time slot: what a policy may know (`SlotState`) and what happened
(`SlotOutcome`). Times are relative to the start of the slot, in milliseconds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = ["BatchState", "CarriedTasks", "SlotState", "SlotOutcome", "ScoringRules"]


class ScoringRules(NamedTuple):
    """How completion times turn into reward; fixed by the `MECConfig` readings."""

    psi_scale: float  # ψ(t) = psi_scale * (1 - sigmoid(5 t / δ)): 1.0 as written, 2.0 doubled
    drop_late: bool  # True: a task is abandoned at its deadline (late_policy="drop")
    from_transmission: bool  # True: completion counted from transmission start (eq. (8) literally)


class CarriedTasks(NamedTuple):
    """Tasks of earlier slots still on their way to their ES at the start of this slot
    (``cross_slot_queue="fcfs"``): fixed, not decided. C tasks (leading axes (C,) in a
    `SlotState`, (K, C) in a `BatchState`, padded with ``present`` False); times in ms after
    the start of the current slot."""

    device_ids: np.ndarray  # int, the device that generated the task
    server: np.ndarray  # int, its ES n
    exit_index: np.ndarray  # int, its candidate exit l (0-based row of the table)
    arrival_ms: np.ndarray  # arrival at the ES (>= 0: still in transit at the slot start)
    exec_ms: np.ndarray  # computation time at the ES (in a state: predicted, table / capacity)
    origin_ms: np.ndarray  # instant from which its completion is counted (eq. (8)), <= 0
    deadline_ms: np.ndarray  # its deadline δ
    present: np.ndarray  # bool, False on padding

    @property
    def count(self) -> int:
        """C, the number of columns (padding included)."""
        return int(self.server.shape[-1])

    def take(self, index: np.ndarray | int) -> CarriedTasks:
        """The tasks of one environment (an int) or a selection along the last axis."""
        return CarriedTasks(*(field[index] for field in self))


def check_one_per_env(items: Sequence, num_envs: int, what: str) -> None:
    """Raise ValueError unless there is one of `items` (seeds, generators, ...) per environment."""
    if len(items) != num_envs:
        raise ValueError(
            f"got {len(items)} {what} for {num_envs} environments; pass one per environment."
        )


def no_carried(shape: tuple[int, ...] = ()) -> CarriedTasks:
    """An empty `CarriedTasks` with leading axes `shape` (e.g. (K,)) and C = 0."""
    full = (*shape, 0)
    ints = np.zeros(full, dtype=np.int64)
    times = np.zeros(full)
    return CarriedTasks(ints, ints, ints, times, times, times, times, np.zeros(full, dtype=bool))


class _Sizes:
    """M, N, L and N*L of a slot state, read from the trailing axes (so one slot and K slots
    share them)."""

    task_bits: np.ndarray
    capacity: np.ndarray
    exit_accuracy: np.ndarray

    @property
    def num_devices(self) -> int:
        """M, devices (active in this slot; of every environment in a batch)."""
        return int(self.task_bits.shape[-1])

    @property
    def num_servers(self) -> int:
        """N, edge servers."""
        return int(self.capacity.shape[-1])

    @property
    def num_exits(self) -> int:
        """L, candidate exits."""
        return int(self.exit_accuracy.shape[0])

    @property
    def num_options(self) -> int:
        """N*L options per device."""
        return self.num_servers * self.num_exits


@dataclass(frozen=True)
class SlotState(_Sizes):
    """The agent-visible state of one slot (docs/interfaces.md, section 3).

    M = devices active in this slot, N = edge servers, L = candidate exits; option o = n*L + l.
    All arrays are float64 unless noted.
    """

    device_ids: np.ndarray  # (M,) int, global ids of the active devices, ascending
    task_bits: np.ndarray  # (M,) task size d, bits
    deadline_ms: np.ndarray  # (M,) deadline δ, ms
    rate_mbps: np.ndarray  # (M, N) uplink rate r as the policy knows it, Mbit/s
    link: np.ndarray  # (M, N) bool, device m can reach ES n this slot
    device_backlog_ms: np.ndarray  # (M,) time until device m's uplink is free (eq. (6)), ms
    server_backlog_ms: np.ndarray  # (N,) time until ES n has finished its queue (eq. (7)), ms
    capacity: np.ndarray  # (N,) available fraction of ES n's capacity, in (0, 1]
    exit_ms: np.ndarray  # (N, L) nominal computation time at full capacity (the table), ms
    exit_accuracy: np.ndarray  # (L,) accuracy φ_l
    rules: ScoringRules = ScoringRules(1.0, True, False)  # reward readings of the config
    # tasks of earlier slots still in transit (cross_slot_queue="fcfs"); None: not tracked
    carried: CarriedTasks | None = None

    def transmission_ms(self) -> np.ndarray:
        """(M, N) predicted transmission time d / r of eq. (1), ms (inf where no link)."""
        with np.errstate(divide="ignore"):
            t = self.task_bits[:, None] / (self.rate_mbps * 1e3)  # bits / (bit/ms)
        return np.where(self.link, t, np.inf)

    def compute_ms(self) -> np.ndarray:
        """(N, L) predicted computation time t^cmp / capacity of eq. (4), ms."""
        return self.exit_ms / self.capacity[:, None]


class SlotOutcome(NamedTuple):
    """Per-task outcomes of one slot, true values, one entry per active device (order of
    `SlotState.device_ids`). Under cross_slot_queue="fcfs": one entry per task whose outcome
    this step fixed -- tasks carried in from earlier slots first (oldest first), then this
    slot's tasks in device order, less those still in transit at the slot's end; arrival
    and completion are then counted from the current slot's start and the task's origin."""

    device_ids: np.ndarray  # (M,) int, global device ids
    server: np.ndarray  # (M,) int, chosen ES n
    exit_index: np.ndarray  # (M,) int, chosen candidate exit l (0-based row of the table)
    arrival_ms: (
        np.ndarray
    )  # (M,) arrival at the ES after the slot start (eq. (6)); inf if dropped before
    completion_ms: np.ndarray  # (M,) completion time (eq. (8)); inf if dropped
    success: np.ndarray  # (M,) bool, completed within the deadline (eq. (11))
    accuracy: np.ndarray  # (M,) φ_l if successful else 0
    q: np.ndarray  # (M,) reward term Φ ψ(t) of eq. (9)


#: the `SlotState` fields that vary per slot (a `BatchState` stacks them on a leading axis)
_PER_SLOT = (
    "task_bits",
    "deadline_ms",
    "rate_mbps",
    "link",
    "device_backlog_ms",
    "server_backlog_ms",
    "capacity",
    "exit_ms",
)


@dataclass(frozen=True)
class BatchState(_Sizes):
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
    carried: CarriedTasks | None = None  # (K, C) tasks in transit (fcfs), padded; None: none

    @property
    def num_envs(self) -> int:
        """K, environments."""
        return int(self.task_bits.shape[0])

    def slot(self, k: int) -> SlotState:
        """The `SlotState` of environment k (device_ids = 0..M-1; arrays are views)."""
        per_slot = {name: getattr(self, name)[k] for name in _PER_SLOT}
        carried = None
        if self.carried is not None:
            carried = self.carried.take(k)
            carried = carried.take(np.flatnonzero(carried.present))
        return SlotState(
            device_ids=np.arange(self.num_devices),
            **per_slot,
            exit_accuracy=self.exit_accuracy,
            rules=self.rules,
            carried=carried,
        )

    @classmethod
    def of(cls, state: SlotState) -> BatchState:
        """One slot as a batch of one (views, no copies, no checks)."""
        per_slot = {name: getattr(state, name)[None] for name in _PER_SLOT}
        carried = None
        if state.carried is not None:
            carried = CarriedTasks(*(field[None] for field in state.carried))
        return cls(
            **per_slot, exit_accuracy=state.exit_accuracy, rules=state.rules, carried=carried
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
        per_slot = {
            name: np.stack([getattr(st, name) for st in states]).astype(
                bool if name == "link" else np.float64, copy=False
            )
            for name in _PER_SLOT
        }
        return cls(
            **per_slot,
            exit_accuracy=np.asarray(first.exit_accuracy, dtype=np.float64),
            rules=first.rules,
            carried=_stack_carried([st.carried for st in states]),
        )


def _stack_carried(parts: Sequence[CarriedTasks | None]) -> CarriedTasks | None:
    """(K, C) padded carried tasks of K states (None when no state tracks any)."""
    if all(part is None for part in parts):
        return None
    parts = [no_carried() if part is None else part for part in parts]
    width = max(part.count for part in parts)
    out = CarriedTasks(*(np.zeros((len(parts), width), f.dtype) for f in no_carried()))
    for k, part in enumerate(parts):
        for dest, src in zip(out, part, strict=True):
            dest[k, : part.count] = src
    return out
