"""Scalar (pure Python) model of one slot's ES queues, for searches that build decisions one
task at a time (the exact optimum, the greedy baselines). It implements the same rules as the
vectorised evaluator: eqs. (1), (4)-(9), FCFS by arrival, then device index."""

from __future__ import annotations

import math

import numpy as np

from .state import SlotState

__all__ = ["ScalarSlot"]


class ScalarSlot:
    """Predicted arrival times and per-task service of one `SlotState`.

    Attributes:
        arrival: arrival[m][n], ms after the slot start (eq. (6)); inf where there is no link
            or (late_policy="drop") where the task would arrive at or after its deadline.
        link: link[m][n] bool.
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

    def serve(self, m: int, n: int, a: float, free: float, ex: int) -> tuple[float, float]:
        """(new ES free time, reward term Φ ψ(t)) of serving device m's task, arriving at `a`,
        at ES n (free at `free`) with exit ex."""
        if a == math.inf:  # dropped on the uplink: the ES never sees it
            return free, 0.0
        start = a if a > free else free
        end = start + self.compute[n][ex]
        if self.drop:
            deadline = self.deadline[m]
            if start >= deadline:
                return free, 0.0
            if end > deadline:
                return deadline, 0.0
        e = math.exp(-5.0 * (end - self.origin[m]) / self.delta[m])  # ψ as in evaluator.psi
        return end, self.phi[ex] * (self.scale * e / (1.0 + e))

    def queue_value(self, n: int, tasks: list[tuple[float, int, int]]) -> float:
        """Sum of the reward terms of `tasks` = [(arrival, m, ex), ...] sorted in FCFS order."""
        free, total = self.backlog[n], 0.0
        for a, m, ex in tasks:
            free, gain = self.serve(m, n, a, free, ex)
            total += gain
        return total
