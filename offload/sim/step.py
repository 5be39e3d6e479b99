"""The true outcome of one slot of K runs: eqs. (1), (4), (6)-(9) and (11) with the true
rates and inference times, and the backlogs the next slot starts from. `OffloadEnv` calls it
with K = 1, `BatchEnv` with K runs; there is no other implementation.

Under ``cross_slot_queue="fcfs"`` the slot's tasks join those carried in from earlier slots
(`offload.sim.carry`); the result then lists the tasks whose outcome this step fixes.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .carry import fcfs_step
from .evaluator import deadline_origin, score_decisions
from .fcfs import schedule_slot
from .reward import psi
from .state import BatchState, CarriedTasks, SlotOutcome, SlotState

__all__ = ["OneSlot", "TrueSlot", "serve_one", "true_slot"]


class TrueSlot(NamedTuple):
    """True outcome of one slot of K runs: T task columns per run (T = M for
    cross_slot_queue="free_at"; carried tasks first, then the M new ones, for "fcfs")."""

    tasks: CarriedTasks  # (K, T) the tasks (true computation times), times after the slot start
    final: np.ndarray  # (K, T) bool, the task's outcome is fixed in this step
    completion_ms: np.ndarray  # (K, T) eq. (8); inf if dropped, lost, or not final
    success: np.ndarray  # (K, T) bool, final and within the deadline (eq. (11))
    accuracy: np.ndarray  # (K, T) φ_l if successful, else 0
    q: np.ndarray  # (K, T) reward term Φ ψ(t) of eq. (9) (0 if not final)
    device_free_ms: np.ndarray  # (K, M) each uplink's busy time after the slot start (eq. (6))
    server_free_ms: np.ndarray  # (K, N) each ES's free time after the slot start (eq. (7))
    carry: tuple[CarriedTasks, np.ndarray] | None  # tasks in transit (fcfs), else None


def true_slot(
    state: BatchState,
    decisions: np.ndarray,
    *,
    rate_true_mbps: np.ndarray,
    jitter: np.ndarray,
    linked: np.ndarray | None,
    slot_ms: np.ndarray,
    device_ids: np.ndarray,
    carry: tuple[CarriedTasks, np.ndarray] | None = None,
) -> TrueSlot:
    """Serve one slot of K runs with the true values.

    Args:
        state: the K runs' slot states (what the policies saw; the table latencies, capacities,
            backlogs and rules are also the truth).
        decisions: int (K, M), checked options o = n*L + l.
        rate_true_mbps: (K, M, N) true uplink rates.
        jitter: (K, M) true inference time / table inference time (eq. (4)).
        linked: (K, M) bool, the chosen link is up; a task over a link that is down is lost
            (never arrives, never uses its uplink). None: every chosen link is up.
        slot_ms: (K,) slot length τ of each run, ms.
        device_ids: (K, M) int, the global device id of each column (for the outcome).
        carry: the tasks in transit (cross_slot_queue="fcfs"), None for "free_at".
    """
    rules = state.rules
    server, exit_index = np.divmod(decisions, state.num_exits)
    run = np.arange(state.num_envs)[:, None]
    dev = np.arange(state.num_devices)
    backlog = state.device_backlog_ms
    origin = deadline_origin(rules.from_transmission, backlog)
    deadline_abs = origin + state.deadline_ms
    tx_end = backlog + state.task_bits / (rate_true_mbps[run, dev, server] * 1e3)  # (1), (6)
    arrival = np.where(tx_end < deadline_abs, tx_end, np.inf) if rules.drop_late else tx_end
    if linked is not None:
        arrival = np.where(linked, arrival, np.inf)
    exec_ms = (
        state.exit_ms[run, server, exit_index] * jitter / state.capacity[run, server]
    )  # eq. (4)
    # eq. (6): the uplink stays busy until the transmission ends (or the deadline, if dropped);
    # a lost task never uses it
    if rules.drop_late:
        tx_end = np.where(backlog < deadline_abs, np.minimum(tx_end, deadline_abs), backlog)
    device_free = tx_end if linked is None else np.where(linked, tx_end, backlog)
    every = np.ones(decisions.shape, dtype=bool)
    new = CarriedTasks(
        device_ids,
        server,
        exit_index,
        arrival,
        exec_ms,
        origin,
        state.deadline_ms,
        every,
    )
    if carry is not None:
        served = fcfs_step(
            carry[0],
            carry[1],
            new,
            state.exit_ms[run, server, exit_index] / state.capacity[run, server],
            state.server_backlog_ms,
            slot_ms,
            state.exit_accuracy,
            rules.drop_late,
            rules.psi_scale,
        )
        return TrueSlot(
            served.tasks,
            served.final,
            served.completion_ms,
            served.success,
            served.accuracy,
            served.q,
            device_free,
            served.server_free_ms,
            (served.carried, served.carried_predicted_ms),
        )
    present = every if linked is None else linked
    finish, server_free = schedule_slot(
        arrival, exec_ms, server, present, state.server_backlog_ms, deadline_abs, rules.drop_late
    )
    completion = finish - origin  # eq. (8)
    if linked is not None:
        completion = np.where(linked, completion, np.inf)
    success = completion <= state.deadline_ms  # eq. (11), as a metric
    accuracy = state.exit_accuracy[exit_index]
    q = accuracy * psi(completion, state.deadline_ms, rules.psi_scale)  # eq. (9)
    return TrueSlot(
        new,
        every,
        completion,
        success,
        np.where(success, accuracy, 0.0),
        q,
        device_free,
        server_free,
        None,
    )


class OneSlot(NamedTuple):
    """One served slot of one run (what `OffloadEnv.step` and `CityEnv.step` report)."""

    outcome: SlotOutcome  # the tasks whose outcome the step fixes (true values)
    linked: np.ndarray  # (M,) bool, the chosen link was up (False: the task is lost)
    predicted_q: float  # Q of eq. (9) predicted from the state; a lost task scores 0
    device_free_ms: np.ndarray  # (M,) each uplink's busy time after the slot start, ms
    server_free_ms: np.ndarray  # (N,) each ES's free time after the slot start, ms
    carry: tuple[CarriedTasks, np.ndarray] | None  # tasks in transit (fcfs), else None


def serve_one(
    state: SlotState,
    decision: np.ndarray,
    *,
    rate_true_mbps: np.ndarray,
    jitter: np.ndarray,
    slot_ms: float,
    carry: tuple[CarriedTasks, np.ndarray] | None = None,
) -> OneSlot:
    """`true_slot` for one run (K = 1) and one checked decision, with the predicted Q.

    Args:
        state: the slot state the decision was made on.
        decision: (M,) int, checked options o = n*L + l (one per device of `state`).
        rate_true_mbps: (M, N) true uplink rates of the state's devices, Mbit/s.
        jitter: (M,) true inference time / table inference time of each task.
        slot_ms: slot length τ, ms.
        carry: the tasks in transit (cross_slot_queue="fcfs"), None for "free_at".
    """
    ids = state.device_ids
    server = decision // state.num_exits
    linked = state.link[np.arange(ids.size), server]  # False: the task is lost
    # a lost task scores 0 and takes no resources; carried tasks keep their reward terms
    predicted_q = float(score_decisions(state, decision, None if linked.all() else linked)[0])
    res = true_slot(
        BatchState.of(state),
        decision[None],
        rate_true_mbps=rate_true_mbps[None],
        jitter=jitter[None],
        linked=None if linked.all() else linked[None],
        slot_ms=np.array([slot_ms]),
        device_ids=ids[None],
        carry=carry,
    )
    done = slice(None) if res.carry is None else res.final[0]  # free_at: every task
    tasks = res.tasks.take(0)
    outcome = SlotOutcome(
        device_ids=tasks.device_ids[done],
        server=tasks.server[done],
        exit_index=tasks.exit_index[done],
        arrival_ms=tasks.arrival_ms[done],
        completion_ms=res.completion_ms[0, done],
        success=res.success[0, done],
        accuracy=res.accuracy[0, done],
        q=res.q[0, done],
    )
    return OneSlot(
        outcome, linked, predicted_q, res.device_free_ms[0], res.server_free_ms[0], res.carry
    )
