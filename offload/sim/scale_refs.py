"""References at city scale, all on the predicted Q of eq. (9) of one `SlotState`:
greedy and random (the baselines of `offload.sim.baselines`, reused: at M = 1,000, N = 50 the
scalar greedy takes about 0.15 s), a local search that improves a start decision, an upper
bound on every decision's predicted Q, and sub-networks small enough for the exact optimum
(`offload.sim.optimum.optimal_decision`) to anchor the bound.

The upper bound (`upper_bound`): Σ_m max over the options o that device m reaches of the
reward term its task would earn *alone* on o -- behind the ES's current backlog only, no
other task of the slot queued. Why it bounds every decision's predicted Q: in any decision,
device m's task at ES n is served first come, first served (eq. (7)); the ES's free time
starts at its backlog and only grows as earlier tasks are served (with drop-late, a served
task keeps the ES until min(end, deadline) >= its start >= the free time before it), so the
task starts no earlier than alone, finishes no earlier, and ψ is decreasing: its term φ_l ψ(t)
is at most its term alone on the same option, which is at most the best over its options; a
task dropped or lost earns 0 <= that best. Summing over the devices bounds Q (floating-point
addition is monotone, so the computed sums keep the order). Carried tasks (cross_slot_queue
"fcfs") are not supported here. With one device the bound is the optimum.
"""

from __future__ import annotations

import bisect
from typing import NamedTuple

import numpy as np

from .baselines import greedy_decision, random_decision
from .evaluator import check_decisions, predicted, score_decisions
from .reward import psi
from .scalar import ScalarSlot
from .state import BatchState, SlotState

__all__ = [
    "LocalSearch",
    "alone_rewards",
    "greedy_decision",
    "local_search",
    "random_decision",
    "sub_network",
    "upper_bound",
]


def _no_carried(state: SlotState) -> None:
    if state.carried is not None and state.carried.present.any():
        raise ValueError(
            "the scale references do not model carried tasks; use cross_slot_queue='free_at'."
        )


def _alone_linked(state: SlotState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(devices (P,), servers (P,), rewards (P, L)) of every linked (device, ES) pair: the
    reward term of the device's task alone on each exit of that ES (see `alone_rewards`).
    Only the P linked pairs are computed (about M*k in a city), not all M*N."""
    _no_carried(state)
    pred = predicted(BatchState.of(state))
    dev, srv = np.nonzero(state.link)
    num_exits = state.num_exits
    arrival = pred.arrival[0][dev, srv][:, None]  # (P, 1), inf: dropped on the uplink
    start = np.maximum(arrival, state.server_backlog_ms[srv][:, None])  # eq. (7), alone
    end = start + pred.compute[0].reshape(state.num_servers, num_exits)[srv]
    deadline_abs = pred.deadline_abs[0][dev][:, None]
    if state.rules.drop_late:
        finish = np.where((start < deadline_abs) & (end <= deadline_abs), end, np.inf)
    else:
        finish = end
    completion = finish - pred.origin[0][dev][:, None]  # eq. (8)
    q = state.exit_accuracy * psi(
        completion, state.deadline_ms[dev][:, None], state.rules.psi_scale
    )
    return dev, srv, q  # eq. (9)


def alone_rewards(state: SlotState) -> np.ndarray:
    """(M, N*L) predicted reward term φ_l ψ(t) of eq. (9) of each device's task on each
    option o = n*L + l with no other task of the slot queued (behind ES n's backlog only);
    -inf where device m does not reach ES n. The same arithmetic as `score_decisions` of a
    one-device decision (eqs. (1), (4), (6)-(8)).

    Raises:
        ValueError: the state holds carried tasks.
    """
    dev, srv, q = _alone_linked(state)
    out = np.full((state.num_devices, state.num_servers, state.num_exits), -np.inf)
    out[dev, srv] = q
    return out.reshape(state.num_devices, state.num_options)


def upper_bound(state: SlotState) -> float:
    """Upper bound on the predicted Q of eq. (9) of every decision of the slot: the sum of
    each task's best reward alone (module docstring: why). A device without any link adds 0.

    Raises:
        ValueError: the state holds carried tasks.
    """
    dev, _, q = _alone_linked(state)
    best = np.zeros(state.num_devices)  # rewards are >= 0; a device without links adds 0
    np.maximum.at(best, dev, q.max(axis=1))
    return float(best.sum())


class LocalSearch(NamedTuple):
    """Result of `local_search`."""

    decision: np.ndarray  # (M,) int, option n*L + l per device
    q: float  # its predicted Q (score_decisions), never below the start's
    start_q: float  # the start decision's predicted Q
    moves: int  # accepted moves
    passes: int  # passes over the devices made


class _Queues:
    """Each ES's FCFS queue of one decision, with the ES free time and the running reward sum
    before every position, so that a change at position p re-serves positions >= p only."""

    def __init__(self, model: ScalarSlot, decision: np.ndarray) -> None:
        self.model = model
        num_exits = model.num_exits
        self.tasks: list[list[tuple[float, int, int]]] = [[] for _ in range(model.num_srv)]
        for m, o in enumerate(decision.tolist()):
            n, ex = divmod(o, num_exits)
            self.tasks[n].append((model.arrival[m][n], m, ex))
        self.free: list[list[float]] = []
        self.value: list[list[float]] = []
        for n in range(model.num_srv):
            self.tasks[n].sort()
            self.free.append([model.backlog[n]])
            self.value.append([0.0])
            self._rebuild(n, 0)

    def total(self, n: int) -> float:
        """Queue value of ES n: the sum of its tasks' reward terms."""
        return self.value[n][-1]

    def position(self, n: int, m: int) -> int:
        """Index of device m's task in ES n's queue (or where it would go)."""
        return bisect.bisect_left(self.tasks[n], (self.model.arrival[m][n], m))

    def _serve_from(self, n: int, p: int, head: list[tuple[float, int, int]], skip: int) -> float:
        """Queue value when the tasks `head` are served at position p, then the old tasks
        from index p + skip on."""
        serve, free, total = self.model.serve, self.free[n][p], self.value[n][p]
        for a, m, ex in head:
            free, gain = serve(m, n, a, free, ex)
            total += gain
        for a, m, ex in self.tasks[n][p + skip :]:
            free, gain = serve(m, n, a, free, ex)
            total += gain
        return total

    def with_task(self, n: int, m: int, ex: int) -> float:
        """Queue value of ES n with device m's task added on exit ex."""
        return self._serve_from(n, self.position(n, m), [(self.model.arrival[m][n], m, ex)], 0)

    def without(self, n: int, p: int) -> float:
        """Queue value of ES n without the task at index p."""
        return self._serve_from(n, p, [], 1)

    def changed_exit(self, n: int, p: int, ex: int) -> float:
        """Queue value of ES n with the task at index p on exit ex."""
        a, m, _ = self.tasks[n][p]
        return self._serve_from(n, p, [(a, m, ex)], 1)

    def remove(self, n: int, p: int) -> None:
        del self.tasks[n][p]
        self._rebuild(n, p)

    def insert(self, n: int, m: int, ex: int) -> None:
        p = self.position(n, m)
        self.tasks[n].insert(p, (self.model.arrival[m][n], m, ex))
        self._rebuild(n, p)

    def _rebuild(self, n: int, p: int) -> None:
        serve = self.model.serve
        free, value = self.free[n][: p + 1], self.value[n][: p + 1]
        f, total = free[-1], value[-1]
        for a, m, ex in self.tasks[n][p:]:
            f, gain = serve(m, n, a, f, ex)
            total += gain
            free.append(f)
            value.append(total)
        self.free[n], self.value[n] = free, value


def local_search(
    state: SlotState,
    start: np.ndarray | None = None,
    *,
    max_passes: int = 2,
    tol: float = 1e-12,
    devices: np.ndarray | None = None,
) -> LocalSearch:
    """Improve a decision by single-device moves: in each pass, every device in turn (in the
    greedy's order: earliest possible arrival first) takes the option over its links -- ES and
    exit -- that raises the predicted Q most, if it raises it by more than `tol`; at most
    `max_passes` passes, fewer when a pass moves nobody. Never returns a decision scoring
    below `start` (checked with `score_decisions`).

    Args:
        state: the slot (no carried tasks).
        start: (M,) options to start from; None: `greedy_decision(state)`.
        max_passes: passes over the devices, >= 1.
        tol: smallest gain in predicted Q that counts as an improvement.
        devices: indices of the devices that may move (the others keep the start's option
            but are still served in the queues); None: every device.

    Raises:
        ValueError: max_passes < 1, a malformed start, carried tasks in the state, or a start
            that uses a link that is down (pass one built from ``state.link``).
    """
    if max_passes < 1:
        raise ValueError(f"max_passes={max_passes}: make at least one pass.")
    _no_carried(state)
    start = greedy_decision(state) if start is None else check_decisions(state, start)[0]
    num_exits = state.num_exits
    if not state.link[np.arange(state.num_devices), start // num_exits].all():
        raise ValueError("start uses a link that is down; build it from state.link.")
    start_q = float(score_decisions(state, start)[0])
    model = ScalarSlot(state)
    queues = _Queues(model, start)
    decision = start.copy()
    earliest = [min(row) for row in model.arrival]
    movable = range(state.num_devices) if devices is None else np.unique(devices).tolist()
    order = sorted(movable, key=lambda d: (earliest[d], d))
    reach = [np.flatnonzero(row).tolist() for row in state.link]
    moves = passes = 0
    for _ in range(max_passes):
        passes += 1
        moved = 0
        for m in order:
            n0, ex0 = divmod(int(decision[m]), num_exits)
            p0 = queues.position(n0, m)
            base0 = queues.total(n0)
            removed = queues.without(n0, p0) - base0
            best = (tol, -1, -1)
            for n in reach[m]:
                base = queues.total(n)
                for ex in range(num_exits):
                    if n == n0:
                        if ex == ex0:
                            continue
                        gain = queues.changed_exit(n0, p0, ex) - base0
                    else:
                        gain = removed + queues.with_task(n, m, ex) - base
                    if gain > best[0]:
                        best = (gain, n, ex)
            if best[1] < 0:
                continue
            _, n, ex = best
            queues.remove(n0, p0)
            queues.insert(n, m, ex)
            decision[m] = n * num_exits + ex
            moved += 1
        moves += moved
        if moved == 0:
            break
    q = float(score_decisions(state, decision)[0])
    if q < start_q:  # rounding of the per-queue sums; never return worse than the start
        return LocalSearch(start, start_q, start_q, 0, passes)
    return LocalSearch(decision, q, start_q, moves, passes)


def sub_network(state: SlotState, devices: np.ndarray) -> SlotState:
    """The slot restricted to `devices` (indices into the state's devices) and the ES any of
    them reaches (ES renumbered in ascending order; device ids kept): a small instance for
    the exact optimum that is itself a slot of the city.

    Raises:
        ValueError: an index outside [0, M) or a repeated index.
    """
    idx = np.asarray(devices, dtype=np.int64)
    if idx.ndim != 1 or idx.size == 0 or idx.min() < 0 or idx.max() >= state.num_devices:
        raise ValueError(f"devices must be indices in [0, {state.num_devices}); got {devices}.")
    if np.unique(idx).size != idx.size:
        raise ValueError("devices holds a repeated index; pass each device once.")
    servers = np.flatnonzero(state.link[idx].any(axis=0))
    if servers.size == 0:  # devices without any link: keep ES 0 so the state has a server
        servers = np.array([0])
    return SlotState(
        device_ids=state.device_ids[idx],
        task_bits=state.task_bits[idx],
        deadline_ms=state.deadline_ms[idx],
        rate_mbps=state.rate_mbps[np.ix_(idx, servers)],
        link=state.link[np.ix_(idx, servers)],
        device_backlog_ms=state.device_backlog_ms[idx],
        server_backlog_ms=state.server_backlog_ms[servers],
        capacity=state.capacity[servers],
        exit_ms=state.exit_ms[servers],
        exit_accuracy=state.exit_accuracy,
        rules=state.rules,
    )
