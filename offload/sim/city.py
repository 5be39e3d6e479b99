"""A city-scale MEC network: N edge servers and a population of D IoT devices in
a rectangular region, each device reaching only nearby servers, with rates from distance.

Description:
    Servers are placed once (uniformly at random or on a jittered grid) and never move;
    server n runs ``server_devices[n % len(server_devices)]``, one latency column of the exit
    table, so servers are heterogeneous. Devices move by random waypoint (pick a point in the
    region and a speed, walk there in a straight line, pause, repeat), leave and join (a
    joining device appears at a uniformly random point). In each slot a device reaches its
    ``k_nearest`` servers and/or those within ``range_m``; links appear and vanish as it moves.
    An active device without any reachable server generates no task that slot (out of
    coverage); the slot state holds the active, covered devices only.

Radio (log-distance path loss, log-normal shadowing, Rayleigh fading, Shannon's formula):
    SNR_dB(d) = P_tx - [PL_0 + 10 n log10(max(d, d_min) / 1 m)] + X_σ - (N_0 + 10 log10 B + NF)
    rate = B log2(1 + 10^(SNR_dB / 10) * g),  B in MHz so the rate is in Mbit/s,
    with X_σ ~ Normal(0, σ) dB per (device, server), redrawn when the device picks a new
    waypoint (slow fading), and g ~ Exp(1) per link and slot (Rayleigh fast fading, |h|^2).
    Defaults: P_tx = 23 dBm (an LTE/NR handset's maximum), PL_0 = 40 dB (free space at 1 m
    and 2.4 GHz: 20 log10(4π/λ) = 40.0), n = 3 (urban micro-cell; 2 is free space, 4 dense
    urban), B = 10 MHz, N_0 = -174 dBm/Hz (thermal noise at 290 K), NF = 5 dB, σ = 4 dB,
    d_min = 10 m. Then SNR_dB(d) = 82 - 30 log10(d) without fading, and the mean-channel rate
    is 100 Mbit/s at 54 m, 70 at 108 m, 40 at 216 m and 20 Mbit/s at 373 m: the paper's
    U[20, 100] Mbit/s spans ranges of 54-373 m. The default server density (25 per km^2)
    puts a device's nearest server at about 100 m and its 5th nearest at about 250 m on
    average (for a Poisson field, E[d_k] ≈ sqrt(k / (π λ))), inside that span.

What the policy knows (`MECConfig.scenario` of ``config.task``): scenarios 1-3 see the true
rate of the slot (fading included); scenario 4 (imperfect channel knowledge) sees the rate of
the mean channel (path loss and shadowing, g = 1) while the transmission gets the faded one.
ES capacity (scenario >= 2) follows each server's own Gauss-Markov process around a mean
drawn per server; scenario >= 3 multiplies each task's inference time by U[1-j, 1+j].

Randomness: one generator, seeded once; the network never depends on the decisions, so the
same seed gives the same network and trace bit for bit, whatever the policy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import NamedTuple

import numpy as np

from ..exit_table import ExitTable
from .config import MECConfig

__all__ = ["CityConfig", "CityNetwork", "CitySlot", "mean_rate_mbps", "snr_db"]

_PLACEMENTS = ("uniform", "grid")


@dataclass(frozen=True)
class CityConfig:
    """One city network; every physical quantity with its unit. Defaults: M = 1,000 devices,
    N = 50 servers, each device reaching its 5 nearest (module docstring: the radio constants
    and why)."""

    num_devices: int = 1000  # D, device population (all active at reset), devices
    num_servers: int = 50  # N, edge servers
    server_devices: tuple[str, ...] = (
        "RTX_2080TI",
        "GTX_1080TI",
    )  # ES n: entry n % len (table column)
    server_density_per_km2: float = 25.0  # sets the region when region_m is None, servers / km^2
    region_m: tuple[float, float] | None = (
        None  # (width, height), m; None: square of area N / density
    )
    server_placement: str = (
        "uniform"  # "uniform" or "grid" (a near-square grid, jittered ±10 % of a cell)
    )
    k_nearest: int | None = (
        5  # a device reaches its k nearest ES; None: no limit (then set range_m)
    )
    range_m: float | None = None  # ...and only ES within this distance, m; None: no limit
    tx_power_dbm: float = 23.0  # P_tx, device transmit power, dBm
    ref_loss_db: float = 40.0  # PL_0, path loss at the reference distance 1 m, dB
    path_loss_exponent: float = 3.0  # n of the log-distance model
    min_distance_m: float = 10.0  # d_min, distances below it count as d_min (keeps rates finite), m
    bandwidth_mhz: float = 10.0  # B, uplink bandwidth per device, MHz (rate in Mbit/s)
    noise_dbm_per_hz: float = -174.0  # N_0, thermal noise density, dBm/Hz
    noise_figure_db: float = 5.0  # NF, receiver noise figure, dB
    shadowing_db: float = 4.0  # σ of the log-normal shadowing per link, dB (0: none)
    rayleigh: bool = True  # Rayleigh fast fading g ~ Exp(1) per link and slot (False: g = 1)
    speed_mps: tuple[float, float] = (0.5, 15.0)  # random-waypoint speed range, m/s (walk to car)
    pause_s: tuple[float, float] = (0.0, 10.0)  # pause at each waypoint, uniform range, s
    join_prob: float = 0.1  # per slot and inactive device, probability that it joins
    leave_prob: float = 0.001  # per slot and active device, probability that it leaves
    capacity_mean: tuple[float, float] = (
        0.4,
        0.9,
    )  # each ES's mean capacity fraction, uniform range
    capacity_std: float = 0.15  # stationary std of each ES's capacity process (scenario >= 2)
    capacity_correlation: float = 0.9  # slot-to-slot correlation of the capacity process
    capacity_min: float = 0.1  # the capacity process is clipped to [capacity_min, 1]
    task: MECConfig = field(
        default_factory=MECConfig
    )  # tasks, τ, δ, scenario, compute_scale, readings

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(message)

        need(self.num_devices >= 1, f"num_devices={self.num_devices}: use at least one device.")
        need(self.num_servers >= 1, f"num_servers={self.num_servers}: use at least one ES.")
        need(
            len(self.server_devices) >= 1,
            "server_devices is empty: name at least one table column.",
        )
        need(self.server_density_per_km2 > 0, "server_density_per_km2 must be positive.")
        need(
            self.region_m is None or (len(self.region_m) == 2 and min(self.region_m) > 0),
            f"region_m={self.region_m}: give (width, height) in metres, both positive, or None.",
        )
        need(
            self.server_placement in _PLACEMENTS,
            f"server_placement={self.server_placement!r}: choose one of {list(_PLACEMENTS)}.",
        )
        need(
            self.k_nearest is not None or self.range_m is not None,
            "set k_nearest, range_m or both: with neither every device would reach every ES.",
        )
        need(self.k_nearest is None or self.k_nearest >= 1, "k_nearest must be >= 1 or None.")
        need(self.range_m is None or self.range_m > 0, "range_m must be positive metres or None.")
        need(self.path_loss_exponent > 0, "path_loss_exponent must be positive (free space: 2).")
        need(self.min_distance_m > 0, "min_distance_m must be positive metres.")
        need(self.bandwidth_mhz > 0, "bandwidth_mhz must be positive.")
        need(self.shadowing_db >= 0, "shadowing_db must be >= 0 dB.")
        need(
            0 < self.speed_mps[0] <= self.speed_mps[1],
            f"speed_mps={self.speed_mps}: give (low, high) with 0 < low <= high.",
        )
        need(
            0 <= self.pause_s[0] <= self.pause_s[1],
            f"pause_s={self.pause_s}: give (low, high) with 0 <= low <= high.",
        )
        for name in ("join_prob", "leave_prob"):
            value = getattr(self, name)
            need(0 <= value <= 1, f"{name}={value}: use a probability in [0, 1].")
        need(
            0 < self.capacity_min <= self.capacity_mean[0] <= self.capacity_mean[1] <= 1,
            "capacity fractions must satisfy 0 < capacity_min <= capacity_mean low <= high <= 1.",
        )
        need(self.capacity_std >= 0, "capacity_std must be >= 0.")
        need(0 <= self.capacity_correlation < 1, "capacity_correlation must be in [0, 1).")
        need(
            self.task.cross_slot_queue == "free_at",
            "the city supports task.cross_slot_queue='free_at' only; set it so.",
        )

    @property
    def region(self) -> tuple[float, float]:
        """(width, height) of the region, m."""
        if self.region_m is not None:
            return float(self.region_m[0]), float(self.region_m[1])
        side = math.sqrt(self.num_servers / self.server_density_per_km2) * 1000.0
        return side, side

    @property
    def server_kinds(self) -> tuple[str, ...]:
        """The device type (table column) of each of the N servers: ES n runs
        ``server_devices[n % len(server_devices)]``."""
        kinds = self.server_devices
        return tuple(kinds[n % len(kinds)] for n in range(self.num_servers))

    @property
    def noise_dbm(self) -> float:
        """Receiver noise power N_0 + 10 log10(B) + NF, dBm."""
        return (
            self.noise_dbm_per_hz
            + 10.0 * math.log10(self.bandwidth_mhz * 1e6)
            + self.noise_figure_db
        )

    def replace(self, **changes: object) -> CityConfig:
        """A copy with some fields changed (validated again)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return CityConfig(**values)


def snr_db(
    cfg: CityConfig, distance_m: np.ndarray, shadow_db: np.ndarray | float = 0.0
) -> np.ndarray:
    """Mean SNR (no fast fading) at `distance_m` metres, dB: the module docstring's formula."""
    d = np.maximum(np.asarray(distance_m, dtype=np.float64), cfg.min_distance_m)
    loss = cfg.ref_loss_db + 10.0 * cfg.path_loss_exponent * np.log10(d)
    return cfg.tx_power_dbm - loss + shadow_db - cfg.noise_dbm


def mean_rate_mbps(
    cfg: CityConfig, distance_m: np.ndarray, shadow_db: np.ndarray | float = 0.0
) -> np.ndarray:
    """Shannon rate B log2(1 + SNR) of the mean channel (g = 1) at `distance_m`, Mbit/s."""
    return cfg.bandwidth_mhz * np.log2(1.0 + 10.0 ** (snr_db(cfg, distance_m, shadow_db) / 10.0))


class CitySlot(NamedTuple):
    """One slot of the city for all D devices (rows of inactive devices are meaningless)."""

    active: np.ndarray  # (D,) bool, the device is in the network
    link: np.ndarray  # (D, N) bool, ES within reach this slot (False on inactive rows)
    distance_m: np.ndarray  # (D, N) device-ES distance, m
    task_bits: np.ndarray  # (D,) task size d, bits
    rate_est_mbps: np.ndarray  # (D, N) rate the policy sees, Mbit/s
    rate_true_mbps: np.ndarray  # (D, N) rate the transmission gets, Mbit/s
    capacity: np.ndarray  # (N,) available ES capacity fraction
    jitter: np.ndarray  # (D,) true / table inference time of each device's task
    joined: np.ndarray  # (D,) bool, joined since the previous slot (its uplink starts empty)


class CityNetwork:
    """The city's state and its evolution, slot by slot (see the module docstring).

    Args:
        config: the city.
        table: the exit table; its latency columns named by ``config.server_devices``.
        rng: the generator every draw comes from (seeded by the caller).

    Raises:
        ExitTableError: a server device type has no latency column in `table`.
    """

    def __init__(self, config: CityConfig, table: ExitTable, rng: np.random.Generator) -> None:
        self.config = cfg = config
        self.rng = rng
        self.server_kind = cfg.server_kinds
        self.exit_ms = cfg.task.server_exit_ms(table, self.server_kind)
        width, height = self.region = cfg.region
        num_dev, num_srv = cfg.num_devices, cfg.num_servers
        self.server_xy = self._place_servers()
        self.capacity_mean = rng.uniform(*cfg.capacity_mean, num_srv)
        self.capacity_state = self._clip_capacity(
            self.capacity_mean + cfg.capacity_std * rng.standard_normal(num_srv)
        )
        self.device_xy = self._points(num_dev)
        self.waypoint = self._points(num_dev)
        self.speed = rng.uniform(*cfg.speed_mps, num_dev)
        self.pause_left_s = np.zeros(num_dev)
        self.shadow_db = cfg.shadowing_db * rng.standard_normal((num_dev, num_srv))
        self.active = np.ones(num_dev, dtype=bool)
        self.joined = np.zeros(num_dev, dtype=bool)
        self.link = np.zeros((num_dev, num_srv), dtype=bool)  # this slot's reach, set by draw()
        self.slot = 0

    # ------------------------------------------------------------------ placement
    def _points(self, count: int) -> np.ndarray:
        width, height = self.region
        return self.rng.uniform(0.0, 1.0, (count, 2)) * np.array([width, height])

    def _place_servers(self) -> np.ndarray:
        cfg, (width, height) = self.config, self.region
        if cfg.server_placement == "uniform":
            return self._points(cfg.num_servers)
        cols = max(1, round(math.sqrt(cfg.num_servers * width / height)))
        rows = math.ceil(cfg.num_servers / cols)
        cell = np.array([width / cols, height / rows])
        idx = np.arange(cfg.num_servers)
        centre = (np.stack([idx % cols, idx // cols], axis=1) + 0.5) * cell
        jitter = self.rng.uniform(-0.1, 0.1, (cfg.num_servers, 2)) * cell
        return np.clip(centre + jitter, 0.0, [width, height])

    def _clip_capacity(self, values: np.ndarray) -> np.ndarray:
        return np.clip(values, self.config.capacity_min, 1.0)

    # ------------------------------------------------------------------ evolution
    def advance(self) -> None:
        """Move to the next slot: mobility (τ of walking or pausing), leaves and joins,
        each ES's capacity process. The draws depend on the seed and the slot only (never on
        the decisions)."""
        cfg, rng = self.config, self.rng
        num_dev, num_srv = cfg.num_devices, cfg.num_servers
        dt_s = cfg.task.slot_ms / 1000.0
        u_leave, u_join = rng.uniform(size=num_dev), rng.uniform(size=num_dev)
        eps = rng.standard_normal(num_srv)
        # random waypoint: pause first, then walk at most speed * dt toward the waypoint
        pausing = self.pause_left_s > 0
        walk_s = np.where(pausing, np.maximum(dt_s - self.pause_left_s, 0.0), dt_s)
        self.pause_left_s = np.maximum(self.pause_left_s - dt_s, 0.0)
        gap = self.waypoint - self.device_xy
        dist = np.hypot(gap[:, 0], gap[:, 1])
        step = np.minimum(self.speed * walk_s, dist)
        arrived = (walk_s > 0) & (step >= dist)
        with np.errstate(invalid="ignore", divide="ignore"):
            unit = np.where(dist[:, None] > 0, gap / dist[:, None], 0.0)
        self.device_xy = np.where(
            arrived[:, None], self.waypoint, self.device_xy + unit * step[:, None]
        )
        # at a waypoint: pause, then a new waypoint, speed and shadowing (the surroundings change)
        renew = np.flatnonzero(arrived)
        self.pause_left_s[renew] = rng.uniform(*cfg.pause_s, renew.size)
        self._renew(renew)
        leaving = self.active & (u_leave < cfg.leave_prob)
        joined = ~self.active & (u_join < cfg.join_prob)
        self.active = (self.active & ~leaving) | joined
        new = np.flatnonzero(joined)
        self.device_xy[new] = self._points(new.size)
        self.pause_left_s[new] = 0.0
        self._renew(new)
        self.joined = joined
        rho = cfg.capacity_correlation
        self.capacity_state = self._clip_capacity(
            self.capacity_mean
            + rho * (self.capacity_state - self.capacity_mean)
            + cfg.capacity_std * math.sqrt(1.0 - rho * rho) * eps
        )
        self.slot += 1

    def _renew(self, devices: np.ndarray) -> None:
        cfg = self.config
        self.waypoint[devices] = self._points(devices.size)
        self.speed[devices] = self.rng.uniform(*cfg.speed_mps, devices.size)
        self.shadow_db[devices] = cfg.shadowing_db * self.rng.standard_normal(
            (devices.size, cfg.num_servers)
        )

    # ------------------------------------------------------------------ one slot
    def reachable(self, distance_m: np.ndarray) -> np.ndarray:
        """(D, N) bool, the ES each device reaches at these distances (m): its k nearest
        (ties by ES index) and/or those within range."""
        cfg = self.config
        link = np.ones(distance_m.shape, dtype=bool)
        if cfg.k_nearest is not None and cfg.k_nearest < cfg.num_servers:
            order = np.argsort(distance_m, axis=1, kind="stable")[:, : cfg.k_nearest]
            near = np.zeros_like(link)
            np.put_along_axis(near, order, True, axis=1)
            link &= near
        if cfg.range_m is not None:
            link &= distance_m <= cfg.range_m
        return link

    def draw(self) -> CitySlot:
        """This slot's links, rates, tasks, capacities and inference-time factors."""
        cfg, rng, task = self.config, self.rng, self.config.task
        num_dev, num_srv = cfg.num_devices, cfg.num_servers
        gap = self.device_xy[:, None, :] - self.server_xy[None, :, :]
        distance = np.hypot(gap[..., 0], gap[..., 1])
        self.link = link = self.reachable(distance) & self.active[:, None]
        snr = 10.0 ** (snr_db(cfg, distance, self.shadow_db) / 10.0)
        fade = rng.exponential(1.0, (num_dev, num_srv))
        lo_kb, hi_kb = task.task_kb
        task_bits = rng.uniform(lo_kb, hi_kb, num_dev) * task.bits_per_kb
        jitter_draw = rng.uniform(1.0 - task.inference_jitter, 1.0 + task.inference_jitter, num_dev)
        rate_true = cfg.bandwidth_mhz * np.log2(1.0 + snr * fade) if cfg.rayleigh else None
        rate_mean = cfg.bandwidth_mhz * np.log2(1.0 + snr)
        if rate_true is None:
            rate_true = rate_mean
        rate_est = rate_mean if task.scenario >= 4 else rate_true
        capacity = self.capacity_state.copy() if task.scenario >= 2 else np.ones(num_srv)
        jitter = jitter_draw if task.scenario >= 3 else np.ones(num_dev)
        return CitySlot(
            self.active.copy(),
            link,
            distance,
            task_bits,
            rate_est,
            rate_true,
            capacity,
            jitter,
            self.joined.copy(),
        )
