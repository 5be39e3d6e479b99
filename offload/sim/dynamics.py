"""Exogenous randomness of the MEC network: tasks, channels, ES capacity and inference-time
fluctuation of the four scenarios (Figs. 5-8), and the dynamic topology.

Every slot draws the same fixed set of random numbers for all D padded devices, whatever the
decisions and the topology: two runs with the same seed see the same tasks and channels
(common random numbers), so policies can be compared slot by slot.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .config import MECConfig

__all__ = ["PaperNetwork", "SlotDraw", "draw_slot", "initial_fading", "update_topology"]

_erf = np.vectorize(math.erf, otypes=[np.float64])


class SlotDraw(NamedTuple):
    """Random quantities of one slot for all D padded devices."""

    task_bits: np.ndarray  # (D,) task size d, bits
    rate_est_mbps: np.ndarray  # (D, N) rate the policy sees, Mbit/s
    rate_true_mbps: np.ndarray  # (D, N) rate the transmission gets, Mbit/s
    capacity: np.ndarray  # (N,) available ES capacity fraction
    jitter: np.ndarray  # (D,) factor on the inference time of each device's task
    fading: np.ndarray  # (D, N) Gauss-Markov latent after this slot (rate_model="markov")


def initial_fading(cfg: MECConfig, rng: np.random.Generator) -> np.ndarray:
    """(D, N) stationary standard-normal start of the fading latent."""
    return rng.standard_normal((cfg.padded_devices, cfg.num_servers))


def draw_slot(cfg: MECConfig, rng: np.random.Generator, fading: np.ndarray) -> SlotDraw:
    """Draw one slot's tasks, rates, ES capacities and inference-time factors.

    Scenario 1: full capacity, table inference times, exact rates; 2: capacity ~ U(capacity_range)
    per ES and slot; 3: plus inference time x U(1 - jitter, 1 + jitter) per task; 4: plus the
    true rate = estimate x U(1 - rate_error, 1 + rate_error) per link.
    """
    num_dev, num_srv = cfg.padded_devices, cfg.num_servers
    lo_kb, hi_kb = cfg.task_kb
    task_bits = rng.uniform(lo_kb, hi_kb, num_dev) * cfg.bits_per_kb
    lo_r, hi_r = cfg.rate_mbps
    uniform = rng.uniform(0.0, 1.0, (num_dev, num_srv))
    noise = rng.standard_normal((num_dev, num_srv))
    rho = cfg.rate_correlation
    fading = rho * fading + math.sqrt(1.0 - rho * rho) * noise
    if cfg.rate_model == "markov":
        # Gauss-Markov latent mapped through the normal CDF: uniform marginal on [lo, hi].
        uniform = 0.5 * (1.0 + _erf(fading / math.sqrt(2.0)))
    rate_est = lo_r + (hi_r - lo_r) * uniform
    cap_draw = rng.uniform(*cfg.capacity_range, num_srv)
    jitter_draw = rng.uniform(1.0 - cfg.inference_jitter, 1.0 + cfg.inference_jitter, num_dev)
    error_draw = rng.uniform(1.0 - cfg.rate_error, 1.0 + cfg.rate_error, (num_dev, num_srv))
    capacity = cap_draw if cfg.scenario >= 2 else np.ones(num_srv)
    jitter = jitter_draw if cfg.scenario >= 3 else np.ones(num_dev)
    rate_true = rate_est * error_draw if cfg.scenario >= 4 else rate_est.copy()
    return SlotDraw(task_bits, rate_est, rate_true, capacity, jitter, fading)


def update_topology(
    cfg: MECConfig, rng: np.random.Generator, active: np.ndarray, link: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Devices leave and join, links go down and up (between two slots).

    Each active device leaves with probability `leave_prob` (never below `min_devices`); each
    device inactive before this change joins with probability `join_prob`, with all links up
    (in equilibrium a fraction join/(join+leave) of the D devices is active); each up link goes
    down with `link_down_prob`, each down link comes up with `link_up_prob`; a device left
    without any link gets one random link back. Without `dynamic_topology` nothing changes
    (the random numbers are still drawn, to keep the other streams aligned).

    Returns:
        active: (D,) bool after the change; link: (D, N) bool; joined: (D,) bool, devices
        that joined now (their uplink starts empty).
    """
    num_dev, num_srv = link.shape
    u_leave = rng.uniform(size=num_dev)
    u_join = rng.uniform(size=num_dev)
    u_link = rng.uniform(size=(num_dev, num_srv))
    rescue_key = rng.uniform(size=(num_dev, num_srv))
    if not cfg.dynamic_topology:
        return active, link, np.zeros(num_dev, dtype=bool)
    active = active.copy()
    link = link.copy()
    leaving = active & (u_leave < cfg.leave_prob)
    excess = int(active.sum() - leaving.sum()) - cfg.min_devices
    if excess < 0:  # keep the lowest-id leavers active so that min_devices stay
        for dev in np.flatnonzero(leaving)[:-excess]:
            leaving[dev] = False
    joined = ~active & (u_join < cfg.join_prob)
    active = (active & ~leaving) | joined
    flip_down = link & (u_link < cfg.link_down_prob)
    flip_up = ~link & (u_link < cfg.link_up_prob)
    link = (link & ~flip_down) | flip_up
    link[joined] = True
    orphan = ~link.any(axis=1)
    for dev in np.flatnonzero(orphan):
        link[dev, int(np.argmax(rescue_key[dev]))] = True
    return active, link, joined


class PaperNetwork:
    """The slot source of a `MECConfig` network (the paper's, scenarios 1-4, with or without
    dynamic topology): its topology and fading between slots and one generator, drawn in one
    fixed order (the initial fading; then per slot `draw_slot`, and `update_topology` between
    slots), so the same seed gives the same slots whoever steps them.

    Args:
        config: the network.
        rng: the generator every draw comes from (seeded by the caller).
    """

    def __init__(self, config: MECConfig, rng: np.random.Generator) -> None:
        self.config = cfg = config
        self.rng = rng
        num_dev = cfg.padded_devices
        self.active = np.arange(num_dev) < cfg.num_devices  # (D,) the device is in the network
        self.link = np.ones((num_dev, cfg.num_servers), dtype=bool)  # (D, N) the link is up
        self.joined = np.zeros(num_dev, dtype=bool)  # (D,) joined since the previous slot
        self.fading = initial_fading(cfg, rng)

    def draw(self) -> SlotDraw:
        """This slot's tasks, rates, capacities and inference-time factors (all D rows)."""
        draw = draw_slot(self.config, self.rng, self.fading)
        self.fading = draw.fading
        return draw

    def advance(self) -> None:
        """Move to the next slot: devices leave and join, links go down and up."""
        self.active, self.link, self.joined = update_topology(
            self.config, self.rng, self.active, self.link
        )
