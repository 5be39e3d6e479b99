"""FCFS service of one slot's tasks at every ES (eqs. (7)-(8)), for S candidate decisions (or
K slots) at once: the rule every other part of the simulator calls -- the evaluator (predicted
Q), the true slot step and the carried-task queue."""

from __future__ import annotations

import numpy as np

__all__ = ["schedule_slot"]


def schedule_slot(
    arrival_ms: np.ndarray,
    exec_ms: np.ndarray,
    server: np.ndarray,
    present: np.ndarray,
    server_backlog_ms: np.ndarray,
    deadline_abs_ms: np.ndarray,
    drop_late: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """FCFS service of one slot's tasks at every ES (eqs. (7)-(8)), for S candidates at once.

    Args:
        arrival_ms: (S, M) arrival of each task at its ES after the slot start, ms (eq. (6));
            inf for a task that never arrives (dropped at the uplink).
        exec_ms: (S, M) computation time of each task at its ES, ms (eq. (4), capacity applied).
        server: (S, M) int, the ES of each task.
        present: (S, M) bool, False for a task left out of the candidate (partial decisions).
        server_backlog_ms: (N,) time after the slot start at which each ES is free, ms, shared
            by all candidates, or (S, N), one row per candidate (independent slots scored
            together, as in `offload.sim.batch`).
        deadline_abs_ms: (M,) instant after the slot start by which each task must finish, ms,
            or (S, M), one row per candidate.
        drop_late: True: a task is abandoned at its deadline -- one that would start at or after
            it is not computed, one that would finish after it is aborted at the deadline.

    Returns:
        finish_ms: (S, M) instant each task finishes (inf if dropped or absent).
        free_ms: (S, N) instant each ES becomes free after serving the slot.
    """
    num_cand, num_dev = arrival_ms.shape
    backlog = np.asarray(server_backlog_ms, dtype=np.float64)
    deadline = np.asarray(deadline_abs_ms, dtype=np.float64)
    num_srv = backlog.shape[-1]
    waiting = np.where(present, arrival_ms, np.inf)  # absent tasks never reach an ES
    if num_cand <= _PYTHON_BELOW:
        return _schedule_python(waiting, exec_ms, server, present, backlog, deadline, drop_late)
    order = np.argsort(waiting, axis=1, kind="stable")
    # gather once in service order (flat indices are cheaper than take_along_axis); the loop
    # below walks the FCFS queue position by position, all candidates at once
    flat = (order + num_dev * np.arange(num_cand)[:, None]).T  # (M, S)
    pre = present.ravel()[flat]
    arr = waiting.ravel()[flat]
    exe = exec_ms.ravel()[flat]
    slot = server.ravel()[flat] + num_srv * np.arange(num_cand)
    dls = deadline[order.T] if deadline.ndim == 1 else deadline.ravel()[flat]
    # Absent tasks must leave their ES untouched. With drop_late their deadline (and that of a
    # task arriving at or after it) becomes -inf: never served; otherwise their arrival becomes
    # -inf and their computation 0: they start and end when the ES is free (also at inf, behind
    # a task over a missing link, where a -inf computation would give nan).
    if drop_late:
        dls[~pre | (arr >= dls)] = -np.inf
    else:
        arr[~pre] = -np.inf
        exe[~pre] = 0.0
    free = np.tile(backlog, num_cand) if backlog.ndim == 1 else backlog.flatten()  # (S*N,) flat
    starts = np.empty((num_dev, num_cand))
    ends = np.empty((num_dev, num_cand))
    cut = np.empty(num_cand)
    for j in range(num_dev):
        before = free.take(slot[j])
        start = np.maximum(arr[j], before, out=starts[j])  # eq. (7): earlier arrivals first
        end = np.add(start, exe[j], out=ends[j])
        if drop_late:
            # not started by the deadline: ES unchanged; started: busy until min(end, deadline)
            np.minimum(end, dls[j], out=cut)
            free.put(slot[j], np.maximum(before, cut, out=cut))
        else:
            free.put(slot[j], np.maximum(before, end, out=cut))
    if drop_late:
        fin = np.where((starts < dls) & (ends <= dls), ends, np.inf)
    else:
        fin = np.where(pre, ends, np.inf)
    finish = np.empty(num_cand * num_dev)
    finish[flat] = fin
    finish = finish.reshape(num_cand, num_dev)
    free = free.reshape(num_cand, num_srv)
    return finish, free


_PYTHON_BELOW = 8  # fewer candidates than this: a plain Python loop beats numpy's overhead


def _schedule_python(waiting, exec_ms, server, present, backlog, deadline, drop_late):
    """`schedule_slot` for a few candidates, one task at a time (same rules and arithmetic);
    `backlog` is (N,) or (S, N), `deadline` (M,) or (S, M), float64."""
    num_cand, num_dev = waiting.shape
    backlogs, deadlines_all = backlog.tolist(), deadline.tolist()
    shared_backlog, shared_deadline = backlog.ndim == 1, deadline.ndim == 1
    finish, free_after = [], []
    for arr, exe, srv, pre, c in zip(
        waiting.tolist(),
        exec_ms.tolist(),
        server.tolist(),
        present.tolist(),
        range(num_cand),
        strict=True,
    ):
        free = list(backlogs) if shared_backlog else backlogs[c]
        deadlines = deadlines_all if shared_deadline else deadlines_all[c]
        fin = [np.inf] * num_dev
        for m in sorted(range(num_dev), key=arr.__getitem__):  # stable: ties in device order
            n = srv[m]
            before = free[n]
            start = arr[m] if arr[m] > before else before
            end = start + exe[m]
            if drop_late:
                if start < deadlines[m]:
                    free[n] = end if end < deadlines[m] else deadlines[m]
                    if end <= deadlines[m]:
                        fin[m] = end
            elif pre[m]:
                free[n] = end
                fin[m] = end
        finish.append(fin)
        free_after.append(free)
    num_srv = backlog.shape[-1]
    return (
        np.array(finish, dtype=np.float64).reshape(num_cand, num_dev),
        np.array(free_after, dtype=np.float64).reshape(num_cand, num_srv),
    )
