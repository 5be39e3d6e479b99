"""Scalar (pure Python) model of one slot's ES queues, for searches that build decisions one
task at a time (the exact optimum, the greedy baselines). It implements the same rules as the
vectorised evaluator: eqs. (1), (4)-(9), FCFS by arrival, then device index.

Tasks carried in from earlier slots (cross_slot_queue="fcfs") join the queues as fixed tasks
with negative indices m = c - C (so that they sort before the devices on equal arrivals,
oldest first); `queue_value` adds them to every queue of their ES."""

from __future__ import annotations

import math

import numpy as np

from .evaluator import predicted
from .reward import psi
from .state import BatchState, SlotState

__all__ = ["ScalarSlot"]


class ScalarSlot:
    """Predicted arrival times and per-task service of one `SlotState`.

    Attributes:
        arrival: arrival[m][n], ms after the slot start (eq. (6)); inf where there is no link
            or (late_policy="drop") where the task would arrive at or after its deadline.
        link: link[m][n] bool.
        carried: carried[n], the carried tasks of ES n as (arrival, m < 0, exit), FCFS order.
        carried_exit: carried_exit[c], the exit of carried task c (index m = c - C).
    """

    def __init__(self, state: SlotState) -> None:
        num_dev = state.num_devices
        self.num_dev, self.num_srv, self.num_exits = num_dev, state.num_servers, state.num_exits
        pred = predicted(BatchState.of(state))  # eqs. (1), (4), (6), (8): the evaluator's
        self.drop = state.rules.drop_late
        self.arrival = pred.arrival[0].tolist()
        self.link = state.link.tolist()
        self.compute = pred.compute[0].reshape(self.num_srv, self.num_exits).tolist()
        self.phi = state.exit_accuracy.tolist()
        self.scale = state.rules.psi_scale
        self.delta = state.deadline_ms.tolist()
        self.origin, self.deadline = pred.origin[0].tolist(), pred.deadline_abs[0].tolist()
        self.backlog = [float(x) for x in state.server_backlog_ms]
        self.carried: list[list[tuple[float, int, int]]] = [[] for _ in range(self.num_srv)]
        self.carried_exit: list[int] = []
        self.num_carried = 0
        if state.carried is not None and state.carried.present.any():
            self._add_carried(state)

    def _add_carried(self, state: SlotState) -> None:
        c = state.carried
        keep = np.flatnonzero(c.present)
        self.num_carried = num = keep.size
        self.carried_exit = c.exit_index[keep].tolist()
        self.carried_exec = c.exec_ms[keep].tolist()
        self.carried_phi = state.exit_accuracy[c.exit_index[keep]].tolist()
        # per-task origin / deadline / δ lists, indexed by m (negative m counts from the end)
        self.origin = self.origin + c.origin_ms[keep].tolist()
        self.deadline = self.deadline + (c.origin_ms + c.deadline_ms)[keep].tolist()
        self.delta = self.delta + c.deadline_ms[keep].tolist()
        for i, (a, n) in enumerate(
            zip(c.arrival_ms[keep].tolist(), c.server[keep].tolist(), strict=True)
        ):
            self.carried[n].append((a, i - num, self.carried_exit[i]))
        for queue in self.carried:
            queue.sort()

    def serve(self, m: int, n: int, a: float, free: float, ex: int) -> tuple[float, float]:
        """(new ES free time, reward term Φ ψ(t)) of serving device m's task, arriving at `a`,
        at ES n (free at `free`) with exit ex (m < 0: carried task m + C, its own exit)."""
        if a == math.inf:  # dropped on the uplink: the ES never sees it
            return free, 0.0
        start = a if a > free else free  # eq. (7)
        if m < 0:
            exec_ms, phi = (
                self.carried_exec[m + self.num_carried],
                self.carried_phi[m + self.num_carried],
            )
        else:
            exec_ms, phi = self.compute[n][ex], self.phi[ex]
        end = start + exec_ms
        if self.drop:
            deadline = self.deadline[m]
            if start >= deadline:
                return free, 0.0
            if end > deadline:
                return deadline, 0.0
        return end, phi * psi(end - self.origin[m], self.delta[m], self.scale)  # eqs. (8), (9)

    def prefix(self, n: int, queue: list[tuple[float, int, int]]) -> list[tuple[float, float]]:
        """The (ES free time, running sum of reward terms) before each task of ES n's whole
        FCFS `queue` (carried tasks included) and after its last: the states `queue_value`
        passes through, so that a search inserting one task at position p can resume from
        entry p with the same arithmetic."""
        free, total = self.backlog[n], 0.0
        states = [(free, total)]
        for a, m, ex in queue:
            free, gain = self.serve(m, n, a, free, ex)
            total += gain
            states.append((free, total))
        return states

    def queue_value(self, n: int, tasks: list[tuple[float, int, int]]) -> float:
        """Sum of the reward terms of `tasks` = [(arrival, m, ex), ...] sorted in FCFS order,
        and of ES n's carried tasks (merged by arrival; none without carried tasks)."""
        if self.carried[n]:
            tasks = sorted(self.carried[n] + tasks)
        free, total = self.backlog[n], 0.0
        for a, m, ex in tasks:
            free, gain = self.serve(m, n, a, free, ex)
            total += gain
        return total
