"""Exact per-slot optimum of the predicted Q (eq. (9)), the denominator of eq. (17).

Enumerating all (N*L)^M decisions is 10^14 at M = 14, N = 2, L = 5. Instead we use that, for a
fixed decision of the servers, arrival times do not depend on the exits (eq. (6)), and that a
task can only finish later when more tasks are queued (FCFS, eq. (7)). The optimiser sweeps
the "arrival events" (m, n) -- device m's task reaching ES n -- in time order, the order in
which every ES serves its tasks. A partial solution is the set of devices already assigned
and each ES's finish time; at event (m, n) an unassigned device is either served by ES n with
some exit (L branches) or passed on to a later ES (only if it has one). The search is exact:

* ES finish times earlier than the next arrival at that ES are raised to it (they cannot
  matter any more), which merges most partial solutions;
* among partial solutions with the same assigned set, one with later finish times at every ES
  and no larger value is dropped (it can never do better, since later finish times only delay
  later tasks);
* a partial solution whose value plus, for every unassigned device, its best value alone
  behind the tasks already queued on the ESs it can still reach (an upper bound) cannot beat
  a known decision is dropped. The known decision is the better of the greedy baseline and a
  beam pass of the same programme (64 partial solutions per event).

Tasks carried in from earlier slots (cross_slot_queue="fcfs") are fixed events: at its
arrival a carried task is served with its own exit (one branch), and its value alone behind
the ES backlog enters the bounds. They are part of the objective (`score_decisions`) but not
of the decision.

Values equal to the best known one within 1e-9 (relative) may be pruned, so the optimum is
exact to that tolerance.

`brute_force_decision` enumerates every decision with `score_decisions` (tests only).
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np

from .evaluator import score_decisions
from .scalar import ScalarSlot
from .state import SlotState

__all__ = ["Optimum", "optimal_decision", "brute_force_decision"]


class Optimum(NamedTuple):
    """The best decision for one slot and its predicted Q."""

    decision: np.ndarray  # (M,) int, option n*L + l per active device
    q: float  # predicted Q of eq. (9)


def brute_force_decision(state: SlotState, *, chunk: int = 4096) -> Optimum:
    """Best decision by enumerating all (N*L)^M candidates (small instances only)."""
    num_dev, num_opt = state.num_devices, state.num_options
    if num_opt**num_dev > 5_000_000:
        raise ValueError("brute force is for small instances: (N*L)^M must stay below 5e6.")
    best_q, best = -math.inf, np.zeros(num_dev, dtype=np.int64)
    candidates = itertools.product(range(num_opt), repeat=num_dev)
    while True:
        block = np.array(list(itertools.islice(candidates, chunk)), dtype=np.int64)
        if block.size == 0:
            break
        scores = score_decisions(state, block.reshape(-1, num_dev))
        i = int(np.argmax(scores))
        if scores[i] > best_q:
            best_q, best = float(scores[i]), block.reshape(-1, num_dev)[i].copy()
    return Optimum(best, best_q)


def optimal_decision(state: SlotState) -> Optimum:
    """Exact maximiser of the predicted Q of eq. (9) for one slot.

    Raises:
        ValueError: an active device has no link to any ES (no decision is feasible).
    """
    num_dev = state.num_devices
    if num_dev == 0:
        return Optimum(np.zeros(0, dtype=np.int64), 0.0)
    no_link = ~state.link.any(axis=1)
    if no_link.any():
        raise ValueError(
            f"device {int(state.device_ids[np.flatnonzero(no_link)[0]])} has no link to any ES; "
            "every active device needs at least one link."
        )
    search = _EventSearch(state)
    incumbent = _incumbent(state)
    best_q = float(score_decisions(state, incumbent)[0])
    # a narrow beam first: a good decision makes the exact search prune much more
    beam_val, beam_path = search.run(best_q, beam=_BEAM)
    if beam_path is not None and beam_val > best_q:
        incumbent = search.decision(beam_path)
        best_q = float(score_decisions(state, incumbent)[0])
    val, path = search.run(best_q, beam=None)
    if path is None or val <= best_q:
        return Optimum(incumbent, best_q)
    decision = search.decision(path)
    return Optimum(decision, float(score_decisions(state, decision)[0]))


_BEAM = 64  # partial solutions kept per event by the incumbent-finding beam pass


class _EventSearch:
    """The arrival-event dynamic programme of the module docstring for one slot."""

    def __init__(self, state: SlotState) -> None:
        self.model = model = ScalarSlot(state)
        self.serve = model.serve
        num_dev, num_srv = state.num_devices, state.num_servers
        self.num_dev, self.num_srv, self.num_exits = num_dev, num_srv, state.num_exits
        # events in service order: arrival time, then device index (the FCFS tie rule);
        # carried tasks have m < 0 and come first on equal arrivals
        self.events = events = sorted(
            [
                (model.arrival[m][n], m, n)
                for m in range(num_dev)
                for n in range(num_srv)
                if model.link[m][n]
            ]
            + [(a, m, n) for n in range(num_srv) for a, m, _ in model.carried[n]]
        )
        num_ev = len(events)
        self.last_event = {m: i for i, (_, m, _) in enumerate(events)}
        self.device_events: list[list[int]] = [[] for _ in range(num_dev)]
        for i, (_, m, _) in enumerate(events):
            if m >= 0:
                self.device_events[m].append(i)
        # next finite arrival at each ES from event i on (finish times below it do not matter)
        self.next_arrival = nxt = [[0.0] * num_srv for _ in range(num_ev + 1)]
        for i in range(num_ev - 1, -1, -1):
            nxt[i] = list(nxt[i + 1])
            a, _, n = events[i]
            if a != math.inf:
                nxt[i][n] = a
        self.backlog = model.backlog
        # best value of event j alone (ES backlog only) and of device m over events >= i
        self.alone = [self.best_value(m, n, a, self.backlog[n]) for a, m, n in events]
        # value of the carried tasks of events >= i, each alone (an upper bound)
        self.carried_rest = rest = [0.0] * (num_ev + 1)
        for i in range(num_ev - 1, -1, -1):
            rest[i] = rest[i + 1] + (self.alone[i] if events[i][1] < 0 else 0.0)
        self._behind: dict[tuple[int, float], float] = {}  # (event, ES free time) -> best value
        # remaining[i]: for each device, its events j >= i as (j, arrival, ES, value alone)
        self.remaining = [
            [
                (m, [(j, events[j][0], events[j][2], self.alone[j]) for j in evs if j >= i])
                for m, evs in enumerate(self.device_events)
                if evs and evs[-1] >= i
            ]
            for i in range(num_ev + 1)
        ]
        self.bound = bound = [[0.0] * num_dev for _ in range(num_ev + 1)]
        for i in range(num_ev - 1, -1, -1):
            bound[i] = list(bound[i + 1])
            m = events[i][1]
            if m >= 0:
                bound[i][m] = max(bound[i][m], self.alone[i])

    def best_value(self, m: int, n: int, a: float, free: float) -> float:
        return max(self.serve(m, n, a, free, ex)[1] for ex in range(self.num_exits))

    def state_bound(self, mask: int, free: tuple[float, ...], i: int) -> float:
        """Upper bound on what the unassigned devices can still add from event i on: each
        alone, but behind the tasks already queued (all of which arrived earlier), plus the
        carried tasks still to come, each alone."""
        total = self.carried_rest[i]
        behind = self._behind
        for m, remaining in self.remaining[i]:
            if mask >> m & 1:
                continue
            best = 0.0
            for j, a, n, alone in remaining:
                f = free[n]
                if f <= a:
                    v = alone
                else:
                    v = behind.get((j, f))
                    if v is None:
                        v = behind[(j, f)] = self.best_value(m, n, a, f)
                if v > best:
                    best = v
            total += best
        return total

    def normalise(self, free: tuple[float, ...], i: int) -> tuple[float, ...]:
        """Raise each ES finish time to that ES's next arrival (earlier ones do not matter)."""
        nxt = self.next_arrival[i]
        if len(free) == 2:
            f0, f1 = free
            x0, x1 = nxt
            return (f0 if f0 > x0 else x0, f1 if f1 > x1 else x1)
        return tuple(f if f > x else x for f, x in zip(free, nxt, strict=True))

    def run(self, best_known: float, beam: int | None) -> tuple[float, tuple | None]:
        """Best (value, path) found; exact when `beam` is None (paths that cannot beat
        `best_known` are pruned, so None may come back)."""
        slack = 1e-9 * (1.0 + abs(best_known))
        floor = best_known - slack
        num_exits = self.num_exits
        start = self.normalise(tuple(self.backlog), 0)
        # partial solution: (assigned mask, ES free times) -> (value, remaining bound, path)
        rem0 = float(sum(self.bound[0])) + self.carried_rest[0]
        states: dict[tuple, tuple] = {(0, start): (0.0, rem0, None)}
        for i, (a, m, n) in enumerate(self.events):
            if m < 0:  # a carried task: served with its own exit, no decision
                states = self.fixed_event(states, i, a, m, n, floor)
                continue
            bit = 1 << m
            nxt: dict[tuple, tuple] = {}
            pass_on = self.last_event[m] != i
            drop_bound = self.bound[i + 1][m] - self.bound[i][m]
            rem_cut = self.bound[i][m]
            served: dict[float, list[tuple[float, float, int]]] = {}  # ES free time -> outcomes
            normalise = self.normalise

            for (mask, free), (val, rem, path) in states.items():
                if mask & bit:  # already served by an earlier ES
                    _keep_best(nxt, (mask, normalise(free, i + 1)), (val, rem, path))
                    continue
                if pass_on and val + rem + drop_bound >= floor:  # leave it to a later ES
                    _keep_best(nxt, (mask, normalise(free, i + 1)), (val, rem + drop_bound, path))
                rem_after = rem - rem_cut
                if val + rem_after + rem_cut < floor:
                    continue
                outcomes = served.get(free[n])
                if outcomes is None:
                    outcomes = served[free[n]] = [
                        (*self.serve(m, n, a, free[n], ex), n * num_exits + ex)
                        for ex in (range(num_exits) if a != math.inf else range(1))
                    ]
                for new_free, gain, option in outcomes:
                    if val + gain + rem_after < floor:
                        continue
                    free2 = free[:n] + (new_free,) + free[n + 1 :]
                    _keep_best(
                        nxt,
                        (mask | bit, normalise(free2, i + 1)),
                        (val + gain, rem_after, (m, option, path)),
                    )
            states = _pareto(nxt)
            if beam is not None and len(states) > beam:
                ranked = sorted(states.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))
                states = dict(ranked[:beam])
            elif beam is None and len(states) > 8:
                states = {
                    key: value
                    for key, value in states.items()
                    if value[0] + self.state_bound(key[0], key[1], i + 1) >= floor
                }
        best_val, best_path = -math.inf, None
        for val, _, path in states.values():
            if val > best_val:
                best_val, best_path = val, path
        return best_val, best_path

    def fixed_event(self, states: dict, i: int, a: float, m: int, n: int, floor: float) -> dict:
        """The partial solutions after carried task m (< 0) reaches ES n at `a`."""
        nxt: dict[tuple, tuple] = {}
        alone = self.alone[i]
        for (mask, free), (val, rem, path) in states.items():
            new_free, gain = self.serve(m, n, a, free[n], 0)
            if val + gain + rem - alone < floor:
                continue
            free2 = free[:n] + (new_free,) + free[n + 1 :]
            _keep_best(nxt, (mask, self.normalise(free2, i + 1)), (val + gain, rem - alone, path))
        return _pareto(nxt)

    def decision(self, path: tuple) -> np.ndarray:
        decision = np.zeros(self.num_dev, dtype=np.int64)
        while path is not None:
            m, option, path = path
            decision[m] = option
        return decision


def _keep_best(table: dict[tuple, tuple], key: tuple, value: tuple) -> None:
    """Store `value` = (value, bound, path) under `key` unless one with more value is there."""
    old = table.get(key)
    if old is None or value[0] > old[0]:
        table[key] = value


def _pareto(states: dict[tuple, tuple]) -> dict[tuple, tuple]:
    """Drop partial solutions dominated by one with the same assigned set."""
    groups: dict[int, list[tuple[tuple, tuple]]] = {}
    for key, value in states.items():
        groups.setdefault(key[0], []).append((key, value))
    kept: dict[tuple, tuple] = {}
    for items in groups.values():
        if len(items) == 1:
            kept[items[0][0]] = items[0][1]
            continue
        items.sort(key=lambda kv: -kv[1][0])
        if len(items[0][0][1]) == 2:  # two ESs (the paper's setting): unrolled comparison
            front2: list[tuple[float, float]] = []
            for key, value in items:
                f0, f1 = key[1]
                for g0, g1 in front2:
                    if g0 <= f0 and g1 <= f1:
                        break
                else:
                    front2.append((f0, f1))
                    kept[key] = value
            continue
        front: list[tuple[float, ...]] = []
        for key, value in items:
            free = key[1]
            for other in front:
                for g, f in zip(other, free, strict=True):
                    if g > f:
                        break
                else:  # `other` finishes no later on every ES and has no less value
                    break
            else:
                front.append(free)
                kept[key] = value
    return kept


def _incumbent(state: SlotState) -> np.ndarray:
    """A good feasible decision (greedy best response) whose Q prunes the search."""
    from .baselines import greedy_decision  # local import keeps the module graph acyclic

    return greedy_decision(state)
