"""The true outcome of one slot of K runs: eqs. (1), (4), (6)-(9) and (11) with the true
rates and inference times, and the backlogs the next slot starts from. `BatchEnv` calls it
with K runs, `RunStepper` (the one run of `OffloadEnv`, `CityGymEnv` and `CityEnv`) with K = 1;
there is no other implementation.

Under ``cross_slot_queue="fcfs"`` the slot's tasks join those carried in from earlier slots
(`offload.sim.carry`); the result then lists the tasks whose outcome this step fixes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .carry import carried_state, empty_carry, fcfs_step
from .config import MECConfig
from .evaluator import deadline_origin, score_decisions
from .fcfs import schedule_slot
from .reward import psi
from .state import BatchState, CarriedTasks, SlotOutcome, SlotState

__all__ = ["RunStepper", "TrueSlot", "true_slot"]


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


class RunStepper:
    """One run of a slot source stepped slot by slot, the one single-run stepper: the source
    (`PaperNetwork` of a `MECConfig`, `CityNetwork`) draws each slot and moves on between
    slots; the stepper keeps the queues -- each uplink's and each ES's backlog and, under
    ``cross_slot_queue="fcfs"``, the tasks in transit --, builds the agent-visible `SlotState`
    over the active devices that reach an ES, and serves a decision with `true_slot` (K = 1).
    `OffloadEnv`, `CityGymEnv` (Gymnasium adapters) and `CityEnv` step through it.

    The source has ``draw()`` (the slot's ``task_bits``, ``rate_est_mbps``, ``rate_true_mbps``,
    ``capacity`` and ``jitter`` over its D device rows), ``advance()``, ``active`` (D,) and,
    after ``draw()``, ``link`` (D, N) and ``joined`` (D,) (a joining device's uplink starts
    empty).

    Args:
        network: the slot source, just created (its first slot not drawn yet).
        config: the `MECConfig` of its tasks, τ, δ and readings.
        exit_ms: (N, L) computation time of every exit on each ES at full capacity, ms.
        exit_accuracy: (L,) accuracy of every exit.
    """

    def __init__(
        self,
        network: Any,
        config: MECConfig,
        exit_ms: np.ndarray,
        exit_accuracy: np.ndarray,
    ) -> None:
        self.network = network
        self.slot_ms = config.slot_ms
        self.deadline_ms = config.deadline_ms
        self.rules = config.scoring_rules
        self.exit_ms = exit_ms
        self.exit_accuracy = exit_accuracy
        self.device_free_ms = np.zeros(network.active.shape[0])  # uplink busy after slot start
        self.server_free_ms = np.zeros(exit_ms.shape[0])  # ES busy time after the slot start
        self.carry = empty_carry(1) if config.cross_slot_queue == "fcfs" else None
        self.slot = 0
        self._new_slot()

    def _new_slot(self) -> None:
        net = self.network
        self.draw = draw = net.draw()
        self.device_free_ms[net.joined] = 0.0
        ids = np.flatnonzero(net.active & net.link.any(axis=1))  # active, reaching an ES
        self.state = SlotState(
            device_ids=ids,
            task_bits=draw.task_bits[ids],
            deadline_ms=np.full(ids.size, self.deadline_ms),
            rate_mbps=draw.rate_est_mbps[ids],
            link=net.link[ids],
            device_backlog_ms=self.device_free_ms[ids],
            server_backlog_ms=self.server_free_ms.copy(),
            capacity=draw.capacity.copy(),
            exit_ms=self.exit_ms,
            exit_accuracy=self.exit_accuracy,
            rules=self.rules,
            carried=None if self.carry is None else carried_state(*self.carry).take(0),
        )

    def serve(self, decision: np.ndarray) -> dict[str, Any]:
        """Serve the current slot with a checked decision, move the queues to the next slot's
        start and draw that slot; returns the step's info dict (the outcome, the counts, the
        predicted Q; no action mask).

        Args:
            decision: (M,) int, checked options o = n*L + l (one per device of `state`).
        """
        state, draw = self.state, self.draw
        ids = state.device_ids
        server = decision // state.num_exits
        linked = state.link[np.arange(ids.size), server]  # False: the task is lost
        every_link = bool(linked.all())
        # a lost task scores 0 and takes no resources; carried tasks keep their reward terms
        predicted_q = float(score_decisions(state, decision, None if every_link else linked)[0])
        slot_ms = self.slot_ms
        res = true_slot(
            BatchState.of(state),
            decision[None],
            rate_true_mbps=draw.rate_true_mbps[ids][None],
            jitter=draw.jitter[ids][None],
            linked=None if every_link else linked[None],
            slot_ms=np.array([slot_ms]),
            device_ids=ids[None],
            carry=self.carry,
        )
        self.carry = res.carry
        self.device_free_ms[ids] = res.device_free_ms[0]
        self.device_free_ms = np.maximum(self.device_free_ms - slot_ms, 0.0)
        self.server_free_ms = np.maximum(res.server_free_ms[0] - slot_ms, 0.0)
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
        info = {
            "slot": self.slot,
            "outcome": outcome,
            "num_tasks": int(outcome.device_ids.size),  # fcfs: the tasks fixed in this step
            "num_success": int(outcome.success.sum()),
            "num_lost": int((~linked).sum()),
            "accuracy_sum": float(outcome.accuracy.sum()),
            "q_sum": float(outcome.q.sum()),
            "predicted_q": predicted_q,
            "slot_ms": slot_ms,
        }
        self.network.advance()
        self.slot += 1
        self._new_slot()
        return info
