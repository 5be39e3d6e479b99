"""Simple policies over K slot states at once (one slot is a batch of one): random, greedy best
response device by device, and the same greedy restricted to the main branch (the deepest
candidate exit, "GRL-like": no early exits).

`batch_greedy` and `batch_random` take a `BatchState` and return (K, M) decisions;
`greedy_decision`, `main_branch_greedy_decision` and `random_decision` are their one-slot
views on a `SlotState` (the same function with K = 1)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import numpy as np

from .evaluator import candidate_rewards, num_carried, predicted
from .scalar import ScalarSlot
from .state import BatchState, SlotState, check_one_per_env

__all__ = [
    "batch_greedy",
    "batch_random",
    "random_decision",
    "greedy_decision",
    "main_branch_greedy_decision",
    "BASELINES",
]


def batch_greedy(state: BatchState, *, exits: Sequence[int] | None = None) -> np.ndarray:
    """(K, M) greedy best response device by device, one pass, in every slot.

    Devices are placed in the order of their earliest possible arrival (ties by device index);
    each takes the option with the largest gain in its ES's queue value, the sum of the reward
    terms of eq. (9) of that ES's tasks in FCFS order (ties go to the lowest option). Later
    devices are not yet there. `exits` restricts the candidate exits (0-based rows of the
    table; None: all). Placing device m changes only its ES's queue, so round r schedules all
    options of the r-th device of every slot, with the r devices placed before it, as partial
    decisions in one FCFS schedule, and sums each candidate ES's terms sequentially in FCFS
    order.

    A device without any link takes option 0 (its task is lost) and ES 0's running queue
    value restarts at 0 (the rule of the reference greedy, kept so its results do not move).

    Two engines, one rule, chosen by K alone (the decisions do not depend on it): below
    `VECTOR_FROM` slots each slot is searched with the scalar queue model of the exact
    optimum (`ScalarSlot`, about 0.1 ms per slot at M = 10); from it on all slots go through
    the vectorised FCFS schedule together (about 2.5 ms for 24 slots, 2.2x faster than 24
    scalar searches; `benchmarks/bench_sim.py`).
    """
    if state.num_envs < VECTOR_FROM:
        return np.stack(
            [_scalar_greedy(state.slot(k), exits) for k in range(state.num_envs)]
        ).reshape(state.num_envs, state.num_devices)
    num_envs, num_dev = state.num_envs, state.num_devices
    num_exits, num_srv = state.num_exits, state.num_servers
    exit_list = np.arange(num_exits) if exits is None else np.asarray(exits, dtype=np.int64)
    options = (np.arange(num_srv)[:, None] * num_exits + exit_list).ravel()  # ES-major
    option_server = options // num_exits
    num_opt = options.size
    pred = predicted(state)
    order = np.argsort(pred.arrival.min(axis=2), axis=1, kind="stable")  # earliest arrival
    env = np.arange(num_envs)
    decision = np.zeros((num_envs, num_dev), dtype=np.int64)
    values = np.zeros((num_envs, num_srv))  # queue value of each ES so far
    fixed = num_carried(state)  # carried tasks (fcfs): fixed columns in front of every queue
    if fixed:
        values = _carried_values(state, pred)
        carried = state.carried
        fixed_server = np.broadcast_to(carried.server[:, None], (num_envs, num_opt, fixed))
        fixed_present = np.broadcast_to(carried.present[:, None], fixed_server.shape)
    for r in range(num_dev):
        dev = order[:, r]  # (K,): the next device of every slot
        # schedule only the devices placed so far and dev, in index order (FCFS ties)
        cols = np.sort(order[:, : r + 1], axis=1)
        col = np.argmax(cols == dev[:, None], axis=1)
        reach = state.link[env, dev][:, option_server]  # (K, options): the option's link is up
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
        value = np.cumsum(terms, axis=2)[:, :, -1]  # sequential sum in FCFS order
        gain = np.where(reach, value - values[:, option_server], -np.inf)
        best = np.argmax(gain, axis=1)  # first maximum: the lowest option
        orphan = ~reach.any(axis=1)
        decision[env, dev] = np.where(orphan, 0, options[best])
        values[env, option_server[best]] = value[env, best]
        values[orphan, 0] = 0.0
    return decision


VECTOR_FROM = 8  # batch_greedy: from this many slots on the vectorised engine is faster


def _scalar_greedy(state: SlotState, exits: Sequence[int] | None) -> np.ndarray:
    """`batch_greedy`'s rule for one slot on the scalar queue model (see there).

    Each ES keeps its FCFS queue (carried tasks included) and the queue model's states before
    every position (`ScalarSlot.prefix`); a candidate task is inserted at its FCFS position p
    and only the tasks from p on are served again -- the same sums, in the same order, as
    `ScalarSlot.queue_value` of the whole queue."""
    model = ScalarSlot(state)
    num_exits = state.num_exits
    exits = list(range(num_exits)) if exits is None else [int(x) for x in exits]
    decision = np.zeros(state.num_devices, dtype=np.int64)
    queues = [sorted(model.carried[n]) for n in range(state.num_servers)]
    states = [model.prefix(n, queues[n]) for n in range(state.num_servers)]
    values = [states[n][-1][1] for n in range(state.num_servers)]  # carried tasks (fcfs)
    earliest = [min(row) for row in model.arrival]
    for m in sorted(range(state.num_devices), key=lambda d: (earliest[d], d)):
        best = (-math.inf, 0, 0, 0.0)  # no link at all: option 0, ES 0's value restarts at 0
        for n in range(state.num_servers):
            if not model.link[m][n]:
                continue
            a, queue = model.arrival[m][n], queues[n]
            p = bisect.bisect(queue, (a, m, 0))  # FCFS position (no other task of device m)
            for ex in exits:
                free, value = states[n][p]
                free, gain = model.serve(m, n, a, free, ex)
                value += gain
                for a2, m2, ex2 in queue[p:]:
                    free, gain = model.serve(m2, n, a2, free, ex2)
                    value += gain
                if value - values[n] > best[0]:
                    best = (value - values[n], n, ex, value)
        _, n, ex, value = best
        bisect.insort(queues[n], (model.arrival[m][n], m, ex))
        states[n] = model.prefix(n, queues[n])
        values[n] = value
        decision[m] = n * num_exits + ex
    return decision


def _carried_values(state: BatchState, pred) -> np.ndarray:  # noqa: ANN001 - evaluator._Predicted
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
        values[:, n] = np.cumsum(terms, axis=1)[:, -1]  # sequential sum in FCFS order
    return values


def batch_random(state: BatchState, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """(K, M) uniformly random ES among each device's links and uniformly random exit, slot k
    drawing from ``rngs[k]`` (uniform keys per link, then the exits).

    Raises:
        ValueError: not one generator per slot.
    """
    check_one_per_env(rngs, state.num_envs, "generators")
    shape = state.link.shape[1:]
    keys, exits = [], []
    for rng in rngs:
        keys.append(rng.uniform(size=shape))
        exits.append(rng.integers(0, state.num_exits, state.num_devices))
    server = np.argmax(np.where(state.link, np.stack(keys), -1.0), axis=2)
    return server * state.num_exits + np.stack(exits)


def random_decision(state: SlotState, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random ES among the device's links and a uniformly random exit."""
    return batch_random(BatchState.of(state), [rng])[0]


def greedy_decision(state: SlotState, *, exits: Sequence[int] | None = None) -> np.ndarray:
    """`batch_greedy` of one slot: (M,) options (its scalar engine, without the batch view)."""
    return _scalar_greedy(state, exits)


def main_branch_greedy_decision(state: SlotState) -> np.ndarray:
    """Greedy best response using only the deepest candidate exit (the main branch)."""
    return greedy_decision(state, exits=[state.num_exits - 1])


#: name -> policy(state, rng) used by the baseline runner
BASELINES = {
    "random": random_decision,
    "greedy": lambda state, rng: greedy_decision(state),
    "main_branch_greedy": lambda state, rng: main_branch_greedy_decision(state),
}
