"""The event-exact ES queue across slots (``MECConfig.cross_slot_queue = "fcfs"``), for K
environments at once (`OffloadEnv` is K = 1, `BatchEnv` any K).

A task that reaches its ES before the slot's end has its service fixed within the slot: every
task that could still come before it (eq. (7), FCFS by arrival) is known, since the next
slot's tasks arrive after the slot's end. A task still in transit at the slot's end may be
overtaken by the next slot's tasks; it is carried into the next slot as a fixed column of its
FCFS schedule (`CarriedTasks`, times shifted by τ) and its outcome is counted in the step that
fixes it. The ES "free at" time passed on is that of the tasks served within the slot.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .fcfs import schedule_slot
from .reward import psi
from .state import CarriedTasks, no_carried

__all__ = ["FcfsStep", "fcfs_step", "carried_state", "empty_carry"]


class FcfsStep(NamedTuple):
    """One slot's FCFS service of the carried tasks and the new ones (columns: the C carried
    first, then the M new), (K, C + M) arrays unless noted."""

    tasks: CarriedTasks  # every column (true computation times), times after the slot start
    final: np.ndarray  # bool, the task's outcome is fixed in this step (success or failure)
    completion_ms: np.ndarray  # eq. (8); inf if dropped, lost, or not final
    success: np.ndarray  # bool, final and within the deadline (eq. (11))
    accuracy: np.ndarray  # φ_l if successful, else 0
    q: np.ndarray  # reward term Φ ψ(t) of eq. (9) (0 if not final)
    server_free_ms: np.ndarray  # (K, N) ES free time after the tasks served within the slot
    carried: CarriedTasks  # (K, C') in transit at the slot end; times after the next start
    carried_predicted_ms: np.ndarray  # (K, C') their predicted computation time, ms


def fcfs_step(
    carried: CarriedTasks,
    carried_predicted_ms: np.ndarray,
    new: CarriedTasks,
    new_predicted_ms: np.ndarray,
    server_backlog_ms: np.ndarray,
    slot_ms: np.ndarray,
    exit_accuracy: np.ndarray,
    drop_late: bool,
    psi_scale: float,
) -> FcfsStep:
    """Serve one slot of K environments under the event-exact queue.

    Args:
        carried: (K, C) tasks carried in (true computation times), padded with present False.
        carried_predicted_ms: (K, C) their predicted computation times.
        new: (K, M) this slot's tasks; arrival inf for a task that never reaches an ES
            (dropped at the uplink, or lost on a link that is down); present True.
        new_predicted_ms: (K, M) their predicted computation times.
        server_backlog_ms: (K, N) ES free time after the slot start, ms.
        slot_ms: (K,) slot length τ, ms.
        exit_accuracy: (L,) φ_l.
        drop_late: late_policy="drop".
        psi_scale: ψ scale of eq. (9).
    """
    tasks = CarriedTasks(
        *(np.concatenate([a, b], axis=1) for a, b in zip(carried, new, strict=True))
    )
    predicted_ms = np.concatenate([carried_predicted_ms, new_predicted_ms], axis=1)
    real, arrival = tasks.present, tasks.arrival_ms
    tau = slot_ms[:, None]
    in_slot = real & (arrival < tau)  # reaches its ES within the slot: service fixed now
    later = real & np.isfinite(arrival) & ~in_slot  # in transit at the slot end: carried on
    deadline = np.where(real, tasks.deadline_ms, 1.0)  # padding: any positive δ
    finish, free = schedule_slot(
        np.where(in_slot, arrival, np.inf),
        tasks.exec_ms,
        tasks.server,
        in_slot,
        server_backlog_ms,
        tasks.origin_ms + deadline,
        drop_late,
    )
    final = real & ~later
    completion = np.where(in_slot, finish - tasks.origin_ms, np.inf)  # eq. (8)
    success = final & (completion <= deadline)  # eq. (11), as a metric
    phi = exit_accuracy[tasks.exit_index]
    q = np.where(final, phi * psi(completion, deadline, psi_scale), 0.0)  # eq. (9)
    # compact the carried-on columns to the front of each row, in column order (older first)
    order = np.argsort(~later, axis=1, kind="stable")[:, : int(later.sum(axis=1).max(initial=0))]
    rows = np.arange(order.shape[0])[:, None]
    nxt = CarriedTasks(*(field[rows, order] for field in tasks))
    nxt = nxt._replace(
        present=later[rows, order],
        arrival_ms=nxt.arrival_ms - tau,
        origin_ms=nxt.origin_ms - tau,
    )
    return FcfsStep(
        tasks,
        final,
        completion,
        success,
        np.where(success, phi, 0.0),
        q,
        free,
        nxt,
        predicted_ms[rows, order],
    )


def empty_carry(num_envs: int) -> tuple[CarriedTasks, np.ndarray]:
    """No carried tasks in any of `num_envs` environments (start of an episode)."""
    return no_carried((num_envs,)), np.zeros((num_envs, 0))


def carried_state(carried: CarriedTasks, predicted_ms: np.ndarray) -> CarriedTasks:
    """What a policy knows of the carried tasks: their computation times as predicted from
    the table and the capacity of their slot (not the scenario-3 fluctuation)."""
    return carried._replace(exec_ms=predicted_ms)
