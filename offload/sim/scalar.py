"""Scalar (pure Python) model of one slot's ES queues, for searches that build decisions one
task at a time (the exact optimum, the greedy baselines). It implements the same rules as the
vectorised evaluator: eqs. (1), (4)-(9), FCFS by arrival, then device index.

Tasks carried in from earlier slots (cross_slot_queue="fcfs") join the queues as fixed tasks
with negative indices m = c - C (so that they sort before the devices on equal arrivals,
oldest first); `queue_value` adds them to every queue of their ES."""

from __future__ import annotations

import math

import numpy as np

from .evaluator import psi_value
from .state import SlotState

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
        rules = state.rules
        self.drop = rules.drop_late
        backlog = state.device_backlog_ms
        origin = backlog if rules.from_transmission else np.zeros(num_dev)
        deadline = origin + state.deadline_ms  # absolute deadline after the slot start
        arrival = backlog[:, None] + state.transmission_ms()  # eqs. (1), (6)
        if self.drop:
            arrival = np.where(arrival < deadline[:, None], arrival, np.inf)
        self.arrival = arrival.tolist()
        self.link = state.link.tolist()
        self.compute = state.compute_ms().tolist()
        self.phi = state.exit_accuracy.tolist()
        self.scale = rules.psi_scale
        self.delta = state.deadline_ms.tolist()
        self.origin, self.deadline = origin.tolist(), deadline.tolist()
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
        start = a if a > free else free
        if m < 0:
            return self._serve_carried(m, a, start, free)
        end = start + self.compute[n][ex]
        if self.drop:
            deadline = self.deadline[m]
            if start >= deadline:
                return free, 0.0
            if end > deadline:
                return deadline, 0.0
        return end, self.phi[ex] * psi_value(end - self.origin[m], self.delta[m], self.scale)

    def _serve_carried(self, m: int, a: float, start: float, free: float) -> tuple[float, float]:
        c = m + self.num_carried
        end = start + self.carried_exec[c]
        if self.drop:
            deadline = self.deadline[m]
            if start >= deadline:
                return free, 0.0
            if end > deadline:
                return deadline, 0.0
        return end, self.carried_phi[c] * psi_value(end - self.origin[m], self.delta[m], self.scale)

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
