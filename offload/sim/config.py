"""Parameters of the simulated MEC network (Section VI-A) and the switches for the paper's
ambiguities (docs/calibration.md explains each reading and its effect)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np

from .reward import psi_scale
from .state import ScoringRules

if TYPE_CHECKING:
    from ..exit_table import ExitTable

__all__ = ["MECConfig", "KB_BITS"]

#: Bits per "KB" under each reading of the paper's task size (Section VI-A).
KB_BITS = {"kB8000": 8000.0, "KiB8192": 8192.0, "kbit1000": 1000.0}

_PSI_FORMS = ("as_written", "doubled")
_REWARD_FORMS = ("psi", "on_time")
_LATE_POLICIES = ("send", "drop")
_ORIGINS = ("generation", "transmission")
_RATE_MODELS = ("iid", "markov")
_CROSS_SLOT_QUEUES = ("free_at", "fcfs")


@dataclass(frozen=True)
class MECConfig:
    """One simulated MEC network. Defaults are the paper's Section VI-A settings plus the
    readings chosen in docs/calibration.md.

    Scenarios (Figs. 5-8): 1 static full capacity; 2 ES capacity drawn each slot; 3 plus
    inference time fluctuation; 4 plus imperfect channel knowledge.

    ``cross_slot_queue`` says how an ES's queue passes from one slot to the next when tasks
    are still on their way at the slot's end (only possible when δ > τ or uplinks are
    backlogged): "free_at" (the reading of the committed results) serves each slot's tasks in
    full, as if the slot were alone, and carries one "ES free at" time -- a task of slot k
    that reaches the ES after a task of slot k+1 is still served first; "fcfs" is eq. (7)
    across slots, event-exact: tasks that reach their ES after the slot's end are carried
    into the next slot's queue and served by arrival together with that slot's tasks (older
    tasks first on equal arrivals). Under "fcfs" a task's outcome is counted in the step that
    fixes it, and the carried tasks are part of the state the decisions are scored against
    (docs/offload-sim.md, "Cross-slot queue").
    """

    num_devices: int = 14  # M, IoT devices active at reset
    max_devices: int | None = None  # padding size of the observation; None = num_devices
    server_devices: tuple[str, ...] = (
        "RTX_2080TI",
        "GTX_1080TI",
    )  # device type of each ES (exit-table latency column)
    slot_ms: float = 30.0  # slot length τ, ms (the paper uses 10 and 30)
    deadline_ms: float = 30.0  # task deadline δ, ms
    task_kb: tuple[float, float] = (50.0, 100.0)  # task size d range, "KB" (see kb_reading)
    rate_mbps: tuple[float, float] = (20.0, 100.0)  # uplink rate r range, Mbit/s (1e6 bit/s)
    scenario: int = 1  # 1, 2, 3 or 4 (see class docstring)
    capacity_range: tuple[float, float] = (
        0.25,
        1.0,
    )  # ES available capacity fraction, scenarios >= 2
    inference_jitter: float = 0.25  # inference time = table x U(1-j, 1+j), scenarios >= 3
    rate_error: float = 0.20  # true rate = estimate x U(1-e, 1+e), scenario 4
    kb_reading: str = (
        "kB8000"  # bits per KB: "kB8000" (8,000), "KiB8192" (8,192), "kbit1000" (KB read as kbit)
    )
    psi_form: str = (
        "as_written"  # ψ(t): "as_written" 1-sigmoid(5t/δ) (ψ(0)=0.5) or "doubled" 2x that (ψ(0)=1)
    )
    psi_steepness: float = 5.0  # k of ψ(t) = 1 - sigmoid(k t/δ); eq. (9) as written: 5
    reward_form: str = "psi"  # "psi": φ·ψ(t) of eq. (9); "on_time": φ for a task done by δ, else 0
    late_policy: str = (
        "drop"  # "send": eqs. (6)-(7) as written; "drop": a task is abandoned at its deadline
    )
    completion_origin: str = "generation"  # completion time counted from task generation (slot start) or from transmission start (eq. (8) literally)
    rate_model: str = "iid"  # "iid": fresh uniform rates every slot; "markov": Gauss-Markov fading with uniform marginals
    rate_correlation: float = (
        0.9  # slot-to-slot correlation of the fading latent, rate_model="markov"
    )
    cross_slot_queue: str = "free_at"  # "free_at": one ES free time carried between slots; "fcfs": tasks in transit at the slot end join the next slot's FCFS queue (see above)
    compute_scale: float = (
        1.0  # multiplies every exit latency of the table (calibration knob; 1 = the table)
    )
    dynamic_topology: bool = False  # devices join/leave and device-ES links go down/up
    min_devices: int = 1  # fewest active devices under dynamic topology
    join_prob: float = 0.1  # per slot and inactive device, probability that it joins
    leave_prob: float = 0.02  # per slot and active device, probability that it leaves
    link_down_prob: float = 0.05  # per slot and up link, probability that it goes down
    link_up_prob: float = 0.5  # per slot and down link, probability that it comes back

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(message)

        need(self.num_devices >= 1, f"num_devices={self.num_devices}: use at least one IoT device.")
        need(
            self.max_devices is None or self.max_devices >= self.num_devices,
            f"max_devices={self.max_devices} is below num_devices={self.num_devices}; raise it or leave it None.",
        )
        need(
            len(self.server_devices) >= 1,
            "server_devices is empty: name at least one edge server device type.",
        )
        need(
            self.slot_ms > 0 and self.deadline_ms > 0,
            "slot_ms and deadline_ms must be positive milliseconds.",
        )
        need(
            0 < self.task_kb[0] <= self.task_kb[1],
            f"task_kb={self.task_kb}: give (low, high) with 0 < low <= high.",
        )
        need(
            0 < self.rate_mbps[0] <= self.rate_mbps[1],
            f"rate_mbps={self.rate_mbps}: give (low, high) with 0 < low <= high.",
        )
        need(self.scenario in (1, 2, 3, 4), f"scenario={self.scenario}: choose 1, 2, 3 or 4.")
        need(
            0 < self.capacity_range[0] <= self.capacity_range[1] <= 1,
            f"capacity_range={self.capacity_range}: give fractions with 0 < low <= high <= 1.",
        )
        need(0 <= self.inference_jitter < 1, "inference_jitter must be in [0, 1).")
        need(0 <= self.rate_error < 1, "rate_error must be in [0, 1).")
        need(
            self.kb_reading in KB_BITS,
            f"kb_reading={self.kb_reading!r}: choose one of {list(KB_BITS)}.",
        )
        need(
            self.psi_form in _PSI_FORMS,
            f"psi_form={self.psi_form!r}: choose one of {list(_PSI_FORMS)}.",
        )
        need(
            self.psi_steepness > 0,
            f"psi_steepness={self.psi_steepness}: give a positive k (eq. 9 as written: 5).",
        )
        need(
            self.reward_form in _REWARD_FORMS,
            f"reward_form={self.reward_form!r}: choose one of {list(_REWARD_FORMS)}.",
        )
        need(
            self.late_policy in _LATE_POLICIES,
            f"late_policy={self.late_policy!r}: choose one of {list(_LATE_POLICIES)}.",
        )
        need(
            self.completion_origin in _ORIGINS,
            f"completion_origin={self.completion_origin!r}: choose one of {list(_ORIGINS)}.",
        )
        need(
            self.rate_model in _RATE_MODELS,
            f"rate_model={self.rate_model!r}: choose one of {list(_RATE_MODELS)}.",
        )
        need(0 <= self.rate_correlation < 1, "rate_correlation must be in [0, 1).")
        need(
            self.cross_slot_queue in _CROSS_SLOT_QUEUES,
            f"cross_slot_queue={self.cross_slot_queue!r}: choose one of {list(_CROSS_SLOT_QUEUES)}.",
        )
        need(self.compute_scale > 0, "compute_scale must be positive (1 = the table's latencies).")
        need(
            1 <= self.min_devices <= self.num_devices,
            f"min_devices={self.min_devices}: use 1 <= min_devices <= num_devices.",
        )
        for name in ("join_prob", "leave_prob", "link_down_prob", "link_up_prob"):
            value = getattr(self, name)
            need(0 <= value <= 1, f"{name}={value}: use a probability in [0, 1].")

    @property
    def padded_devices(self) -> int:
        """D, the number of device rows in the observation (max_devices or num_devices)."""
        return self.num_devices if self.max_devices is None else self.max_devices

    @property
    def num_servers(self) -> int:
        """N, the number of edge servers."""
        return len(self.server_devices)

    @property
    def bits_per_kb(self) -> float:
        """Bits in one "KB" of task size under `kb_reading`."""
        return KB_BITS[self.kb_reading]

    @property
    def scoring_rules(self) -> ScoringRules:
        """The reward readings (``psi_form``, ``psi_steepness``, ``reward_form``,
        ``late_policy``, ``completion_origin``) as the evaluator uses them."""
        return ScoringRules(
            psi_scale=psi_scale(self.psi_form, self.psi_steepness, self.reward_form),
            drop_late=self.late_policy == "drop",
            from_transmission=self.completion_origin == "transmission",
        )

    def server_exit_ms(
        self, table: ExitTable, server_devices: Sequence[str] | None = None
    ) -> np.ndarray:
        """(N, L) computation time of every candidate exit on each ES at full capacity, ms:
        the table's latency column of the ES's device type (``server_devices``, default this
        config's) × ``compute_scale``.

        Raises:
            ExitTableError: a device type has no latency column in `table`.
        """
        kinds = self.server_devices if server_devices is None else server_devices
        return self.compute_scale * np.stack([table.latency_of(kind) for kind in kinds])

    def replace(self, **changes: object) -> MECConfig:
        """A copy with some fields changed (validated again)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return MECConfig(**values)
