"""Simple policies on a `SlotState`: random, greedy best response device by device, and the
same greedy restricted to the main branch (the deepest candidate exit, "GRL-like": no early
exits)."""

from __future__ import annotations

import math

import numpy as np

from .scalar import ScalarSlot
from .state import SlotState

__all__ = ["random_decision", "greedy_decision", "main_branch_greedy_decision", "BASELINES"]


def random_decision(state: SlotState, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random ES among the device's links and a uniformly random exit."""
    num_dev, num_exits = state.num_devices, state.num_exits
    keys = np.where(state.link, rng.uniform(size=state.link.shape), -1.0)
    server = np.argmax(keys, axis=1)
    exit_index = rng.integers(0, num_exits, num_dev)
    return server * num_exits + exit_index


def greedy_decision(state: SlotState, *, exits: np.ndarray | None = None) -> np.ndarray:
    """Best response device by device, one pass.

    Devices are taken in the order of their earliest possible arrival at an ES; each picks the
    option that maximises the predicted Q of the devices placed so far (later devices are not
    yet there; ties go to the lowest option). `exits` restricts the candidate exits (0-based
    rows of the table).
    """
    model = ScalarSlot(state)
    num_dev, num_exits = state.num_devices, state.num_exits
    exits = list(range(num_exits)) if exits is None else [int(x) for x in exits]
    decision = np.zeros(num_dev, dtype=np.int64)
    queues: list[list[tuple[float, int, int]]] = [[] for _ in range(state.num_servers)]
    values = [model.queue_value(n, []) for n in range(state.num_servers)]  # carried tasks (fcfs)
    earliest = [min(row) for row in model.arrival]
    for m in sorted(range(num_dev), key=lambda d: (earliest[d], d)):
        best = (-math.inf, 0, 0, 0.0)
        for n in range(state.num_servers):
            if not model.link[m][n]:
                continue
            a = model.arrival[m][n]
            for ex in exits:
                queue = sorted(queues[n] + [(a, m, ex)])
                value = model.queue_value(n, queue)
                gain = value - values[n]
                if gain > best[0]:
                    best = (gain, n, ex, value)
        _, n, ex, value = best
        queues[n] = sorted(queues[n] + [(model.arrival[m][n], m, ex)])
        values[n] = value
        decision[m] = n * num_exits + ex
    return decision


def main_branch_greedy_decision(state: SlotState) -> np.ndarray:
    """Greedy best response using only the deepest candidate exit (the main branch)."""
    return greedy_decision(state, exits=np.array([state.num_exits - 1]))


#: name -> policy(state, rng) used by the baseline runner
BASELINES = {
    "random": random_decision,
    "greedy": lambda state, rng: greedy_decision(state),
    "main_branch_greedy": lambda state, rng: main_branch_greedy_decision(state),
}
