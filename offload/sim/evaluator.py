"""Slot evaluator: completion times (eqs. (1), (4)-(8)) and reward Q (eq. (9)) of many
candidate decisions for the same slot, vectorised over the candidates -- and over K slots at
once (`batch_task_rewards`, `batch_score`; one slot is a batch of one).

The FCFS schedule (`offload.sim.fcfs.schedule_slot`) serves two callers: `score_decisions`
predicts Q from what a policy can know (a `SlotState`), and the true slot step
(`offload.sim.step`) computes outcomes from the true rates and inference times.

Time origin is the slot start (the instant every device generates its task). ES queues are
first-come-first-served by arrival time; equal arrivals are served in device order.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .fcfs import schedule_slot
from .reward import psi
from .state import BatchState, SlotState

__all__ = [
    "psi",
    "score_decisions",
    "task_rewards",
    "schedule_slot",
    "check_decisions",
    "batch_score",
    "batch_task_rewards",
]


def check_decisions(state: SlotState, decisions: np.ndarray) -> np.ndarray:
    """Return `decisions` as an int64 (S, M) array; raise ValueError if malformed."""
    dec = np.asarray(decisions)
    if dec.ndim == 1:
        dec = dec[None, :]
    if dec.ndim != 2 or dec.shape[1] != state.num_devices:
        raise ValueError(
            f"decisions have shape {np.shape(decisions)}; pass an int array of shape "
            f"(S, {state.num_devices}): one option n*L+l per active device."
        )
    return option_indices(dec, state.num_servers, state.num_exits)


def option_indices(dec: np.ndarray, num_servers: int, num_exits: int) -> np.ndarray:
    """``dec`` (already the right shape) as int64 options in [0, N*L); ValueError otherwise."""
    if dec.size and not np.issubdtype(dec.dtype, np.integer):
        if not np.all(np.isfinite(dec)) or not np.all(dec == np.round(dec)):
            raise ValueError("decisions must be integer option indices o = n*L + l.")
    dec = dec.astype(np.int64)
    num_options = num_servers * num_exits
    if dec.size and (dec.min() < 0 or dec.max() >= num_options):
        raise ValueError(
            f"decision options must lie in [0, {num_options}) (N*L = "
            f"{num_servers}*{num_exits}); got values in [{dec.min()}, {dec.max()}]."
        )
    return dec


def task_rewards(
    state: SlotState, decisions: np.ndarray, present: np.ndarray | None = None
) -> np.ndarray:
    """(S, M) predicted reward term Φ ψ(t) (eq. (9)) of each task; -inf on a missing link.
    (Tasks carried from earlier slots are scheduled with them; their terms are in
    `score_decisions`, not here.)

    `present` (S, M) bool marks the devices a partial decision includes (others score 0
    and take no resources); None means all. One slot of `batch_task_rewards`.
    """
    dec = check_decisions(state, decisions)
    if present is not None:
        present = np.asarray(present, dtype=bool)[None]
    return _checked_rewards(BatchState.of(state), dec[None], present)[0]


class _Predicted(NamedTuple):
    """What eqs. (1), (4), (6) predict for a `BatchState`, as `task_rewards` computes it, over
    C device columns per environment (all M devices, or a subset for a partial decision)."""

    deadline: np.ndarray  # (K, C) deadline δ
    origin: np.ndarray  # (K, C) instant from which completion is counted (eq. (8))
    deadline_abs: np.ndarray  # (K, C) absolute deadline after the slot start
    arrival: np.ndarray  # (K, C, N) arrival at each ES; inf without link or (drop) too late
    compute: np.ndarray  # (K, N*L) computation time of option o = n*L + l, capacity applied

    def columns(self, devices: np.ndarray) -> _Predicted:
        """The same predictions over the devices (K, C') of each environment."""
        env = np.arange(devices.shape[0])[:, None]
        return _Predicted(
            self.deadline[env, devices],
            self.origin[env, devices],
            self.deadline_abs[env, devices],
            self.arrival[env, devices],
            self.compute,
        )


def deadline_origin(from_transmission: bool, device_backlog_ms: np.ndarray) -> np.ndarray:
    """Eq. (8)'s time origin of each task after the slot start: 0 (the task's generation) or,
    ``completion_origin="transmission"``, the start of its transmission (the uplink backlog)."""
    return device_backlog_ms if from_transmission else np.zeros_like(device_backlog_ms)


def predicted(state: BatchState) -> _Predicted:
    """Eqs. (1), (4), (6), (8) as a policy predicts them (estimated rates, table latencies)."""
    rules = state.rules
    backlog = state.device_backlog_ms
    origin = deadline_origin(rules.from_transmission, backlog)
    deadline_abs = origin + state.deadline_ms
    with np.errstate(divide="ignore"):
        tx = state.task_bits[:, :, None] / (state.rate_mbps * 1e3)  # eq. (1), bits / (bit/ms)
    arrival = backlog[:, :, None] + np.where(state.link, tx, np.inf)  # eq. (6)
    if rules.drop_late:
        arrival[arrival >= deadline_abs[:, :, None]] = np.inf
    compute = (state.exit_ms / state.capacity[:, :, None]).reshape(state.num_envs, -1)  # eq. (4)
    return _Predicted(state.deadline_ms, origin, deadline_abs, arrival, compute)


def candidate_rewards(
    state: BatchState, pred: _Predicted, dec: np.ndarray, present: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(K, S, C) reward terms Φ ψ(t) of eq. (9) of checked decisions `dec` over the device
    columns of `pred` (no missing-link or absence masking), and the arrivals they imply.
    With carried tasks (`num_carried(state)` > 0) both have their columns in front:
    (K, S, num_carried + C)."""
    num_envs, num_cand, num_col = dec.shape
    num_srv = state.num_servers
    rows = num_envs * num_cand
    server, exit_index = np.divmod(dec, state.num_exits)
    env = np.arange(num_envs)[:, None, None]
    pick = (env * num_col + np.arange(num_col)) * num_srv + server  # flat (k, column, n)
    arrival = pred.arrival.ravel()[pick]
    exec_ms = pred.compute.ravel()[env * state.num_options + dec]
    if num_carried(state):
        return _with_carried(state, pred, arrival, exec_ms, server, exit_index, present)
    finish, _ = schedule_slot(
        arrival.reshape(rows, num_col),
        exec_ms.reshape(rows, num_col),
        server.reshape(rows, num_col),
        present.reshape(rows, num_col),
        # one slot: the rows share its backlog and deadlines; K slots: one row each
        state.server_backlog_ms[0]
        if num_envs == 1
        else np.repeat(state.server_backlog_ms, num_cand, 0),
        pred.deadline_abs[0] if num_envs == 1 else np.repeat(pred.deadline_abs, num_cand, 0),
        state.rules.drop_late,
    )
    completion = finish.reshape(dec.shape) - pred.origin[:, None]  # eq. (8)
    q = state.exit_accuracy[exit_index] * psi(
        completion, pred.deadline[:, None], state.rules.psi_scale
    )  # eq. (9)
    return q, arrival


def num_carried(state: BatchState) -> int:
    """C, the columns of tasks carried in from earlier slots (0 when none are tracked)."""
    return 0 if state.carried is None else state.carried.count


def _with_carried(state, pred, arrival, exec_ms, server, exit_index, present):
    """`candidate_rewards` with the carried tasks (cross_slot_queue="fcfs") as C fixed
    columns in front of the candidates' own: they share the FCFS queues (eq. (7)), come first
    on equal arrivals, and their reward terms are returned too, (K, S, C + columns)."""
    carried = state.carried
    num_envs, num_cand, num_col = arrival.shape
    shape = (num_envs, num_cand, carried.count)

    def both(fixed: np.ndarray, own: np.ndarray) -> np.ndarray:
        return np.concatenate([np.broadcast_to(fixed[:, None], shape), own], axis=2)

    real = carried.present
    deadline = np.where(real, carried.deadline_ms, 1.0)  # padding: any positive δ
    origin = np.concatenate([carried.origin_ms, pred.origin], axis=1)  # (K, C + columns)
    deadline_abs = np.concatenate([carried.origin_ms + deadline, pred.deadline_abs], axis=1)
    arrival = both(np.where(real, carried.arrival_ms, np.inf), arrival)
    width = arrival.shape[2]
    rows = num_envs * num_cand
    finish, _ = schedule_slot(
        arrival.reshape(rows, width),
        both(carried.exec_ms, exec_ms).reshape(rows, width),
        both(carried.server, server).reshape(rows, width),
        both(real, present).reshape(rows, width),
        np.repeat(state.server_backlog_ms, num_cand, 0),
        np.repeat(deadline_abs, num_cand, 0),
        state.rules.drop_late,
    )
    completion = finish.reshape(arrival.shape) - origin[:, None]  # eq. (8)
    delta = np.concatenate([deadline, pred.deadline], axis=1)[:, None]
    phi = state.exit_accuracy[both(carried.exit_index, exit_index)]
    return phi * psi(completion, delta, state.rules.psi_scale), arrival  # eq. (9)


def as_options(
    decisions: np.ndarray, shape: tuple[int | None, ...], state: BatchState
) -> np.ndarray:
    """`decisions` as int64 of `shape` (None = any length); ValueError if malformed."""
    dec = np.asarray(decisions)
    if dec.ndim != len(shape) or any(
        s is not None and s != d for s, d in zip(shape, dec.shape, strict=True)
    ):
        want = ", ".join("S" if s is None else str(s) for s in shape)
        raise ValueError(
            f"decisions have shape {dec.shape}; pass an int array of shape ({want}): one "
            "option n*L+l per environment (and candidate) and device."
        )
    return option_indices(dec, state.num_servers, state.num_exits)


def batch_task_rewards(
    state: BatchState, decisions: np.ndarray, present: np.ndarray | None = None
) -> np.ndarray:
    """(K, S, M) predicted reward term Φ ψ(t) (eq. (9)) of each task; -inf on a missing link.

    Equal to `task_rewards(state.slot(k), decisions[k], present[k])` for every k: the K*S
    candidates go through one FCFS schedule (eqs. (7)-(8)) with per-row ES backlogs.

    Args:
        state: K slot states.
        decisions: int (K, S, M), option o = n*L + l per device.
        present: (K, S, M) bool, the devices each partial decision includes (others score 0
            and take no resources); None means all.

    Raises:
        ValueError: decisions or present of the wrong shape, options outside [0, N*L).
    """
    dec = as_options(decisions, (state.num_envs, None, state.num_devices), state)
    return _checked_rewards(state, dec, present)


def _checked_rewards(state: BatchState, dec: np.ndarray, present: np.ndarray | None) -> np.ndarray:
    """`batch_task_rewards` of decisions already checked by `as_options` or `check_decisions`."""
    return _checked_parts(state, dec, present)[0]


def _checked_parts(
    state: BatchState, dec: np.ndarray, present: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """(K, S, M) reward terms of the decided tasks and (K, S) sum of the carried tasks'
    terms (None when there are none)."""
    all_present = present is None
    if all_present:
        present = np.ones(dec.shape, dtype=bool)
    else:
        present = np.asarray(present, dtype=bool)
        if present.shape != dec.shape:
            raise ValueError(
                f"present has shape {present.shape}; pass a bool array of the decisions' "
                f"shape {dec.shape}, or None."
            )
    q, _ = candidate_rewards(state, predicted(state), dec, present)
    carried_sum = None
    if num_carried(state):
        carried_sum = q[..., : state.carried.count].sum(axis=2)
        q = q[..., state.carried.count :]
    server = dec // state.num_exits
    env = np.arange(state.num_envs)[:, None, None]
    pick = (env * state.num_devices + np.arange(state.num_devices)) * state.num_servers + server
    missing = ~state.link.ravel()[pick]  # flat (k, m, n) index: cheaper than a 3-axis gather
    if not all_present:
        q[~present] = 0.0
        missing &= present
    q[missing] = -np.inf
    return q, carried_sum


def batch_score(state: BatchState, decisions: np.ndarray) -> np.ndarray:
    """(K, S) predicted Q of eq. (9) of S candidate decisions (K, S, M) in each environment,
    equal to `score_decisions(state.slot(k), decisions[k])`; -inf where a missing link is used.
    With carried tasks (cross_slot_queue="fcfs") Q also holds their reward terms, which the
    decisions can lower by overtaking them.

    Raises:
        ValueError: decisions of the wrong shape or with options outside [0, N*L).
    """
    dec = as_options(decisions, (state.num_envs, None, state.num_devices), state)
    return _total(*_checked_parts(state, dec, None))


def _total(q: np.ndarray, carried_sum: np.ndarray | None) -> np.ndarray:
    total = q.sum(axis=2)
    return total if carried_sum is None else total + carried_sum


def score_decisions(
    state: SlotState, decisions: np.ndarray, present: np.ndarray | None = None
) -> np.ndarray:
    """Predicted Q of eq. (9) for each of S candidate decisions of one slot.

    Args:
        state: what the policy knows in this slot.
        decisions: int (S, M) (or (M,) for one candidate), option o = n*L + l per device.
        present: bool of the decisions' shape, the devices whose task takes part (the others
            score 0 and take no resources, e.g. a task lost on a link that is down); None
            means all.

    Returns:
        (S,) float64, Q of each candidate; -inf for a candidate that uses a missing link of a
        present device. With carried tasks (cross_slot_queue="fcfs") Q also holds their
        reward terms, whatever ``present`` says of the slot's own tasks.

    Raises:
        ValueError: decisions (or present) of the wrong shape, options outside [0, N*L).
    """
    dec = check_decisions(state, decisions)
    if present is not None:
        present = np.broadcast_to(np.asarray(present, dtype=bool), dec.shape)[None]
    return _total(*_checked_parts(BatchState.of(state), dec[None], present))[0]
