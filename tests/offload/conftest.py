"""Shared fixtures of the offload tests.

- ``paper_table`` (and ``paper_table_path``): the paper's Table I
  (``checkpoints/paper_table1.csv``), loaded when a test asks for it, so a missing or broken
  file fails those tests instead of the collection.
- ``hand_state``: a factory of the hand-computed three-device slot that the evaluator and the
  metrics tests trace by hand.
- ``random_state``: a factory of random slot states (one generator for every test that needs
  random slots: links down, backlogs, capacities; callers override what their test is about).
- ``loaded_city``: a factory of reset city environments with loaded servers
  (scenario 2, compute scale 4); callers pass the city's size and reach.
- ``greedy_slots``: the slot states met while the greedy baseline drives an environment.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from offload.exit_table import ExitTable, load_exit_table
from offload.sim import MECConfig, OffloadEnv, SlotState
from offload.sim.baselines import greedy_decision
from offload.sim.city import CityConfig
from offload.sim.city_env import CityEnv
from offload.sim.state import ScoringRules

PAPER_TABLE = Path(__file__).resolve().parents[2] / "checkpoints" / "paper_table1.csv"


@pytest.fixture(scope="session")
def paper_table_path() -> Path:
    """Where the paper's Table I lives (for commands that take ``--table``)."""
    return PAPER_TABLE


@pytest.fixture(scope="session")
def paper_table(paper_table_path) -> ExitTable:
    """The paper's Table I: 5 candidate exits, two ES device types."""
    return load_exit_table(paper_table_path)


@pytest.fixture
def loaded_city(paper_table):
    """``make(seed=..., **CityConfig fields)``: a city environment on Table I with loaded
    servers (scenario 2, compute scale 4), reset with ``seed``."""

    def make(*, seed: int, **fields) -> CityEnv:
        cfg = CityConfig(task=MECConfig(scenario=2, compute_scale=4.0), **fields)
        env = CityEnv(paper_table, cfg)
        env.reset(seed=seed)
        return env

    return make


@pytest.fixture(scope="session")
def greedy_slots():
    """``greedy_slots(table, config, count, seed)``: the first ``count`` slot states of an
    environment reset with ``seed`` and driven by the greedy baseline (fixed slots on which to
    compare policies)."""

    def make(table: ExitTable, config: MECConfig, count: int, seed: int) -> list[SlotState]:
        env = OffloadEnv(table, config)
        env.reset(seed=seed)
        out = []
        for _ in range(count):
            out.append(env.slot_state)
            env.step(greedy_decision(env.slot_state))
        return out

    return make


def make_hand_state(
    rules: ScoringRules = ScoringRules(1.0, False, False),
    server_backlog: float = 18.0,
    link: np.ndarray | None = None,
) -> SlotState:
    """Three devices, two ES, two exits (accuracy 0.8 / 0.9; 1 ms / 2 ms on ES 0 and 3 ms /
    5 ms on ES 1 at full capacity), ES 0 at capacity 0.5 and busy for ``server_backlog`` ms."""
    return SlotState(
        device_ids=np.array([0, 1, 2]),
        task_bits=np.array([400_000.0, 200_000.0, 300_000.0]),
        deadline_ms=np.full(3, 30.0),
        rate_mbps=np.array([[20.0, 40.0], [50.0, 50.0], [30.0, 10.0]]),
        link=np.ones((3, 2), dtype=bool) if link is None else link,
        device_backlog_ms=np.array([0.0, 0.0, 5.0]),
        server_backlog_ms=np.array([server_backlog, 0.0]),
        capacity=np.array([0.5, 1.0]),
        exit_ms=np.array([[1.0, 2.0], [3.0, 5.0]]),
        exit_accuracy=np.array([0.8, 0.9]),
        rules=rules,
    )


def make_random_state(
    rng: np.random.Generator,
    *,
    num_devices: int,
    exit_ms: np.ndarray,
    exit_accuracy: np.ndarray,
    p_link: float = 0.7,
    rules: ScoringRules = ScoringRules(1.0, True, False),
    task_bits: np.ndarray | None = None,
    deadline_ms: float | np.ndarray = 30.0,
    device_backlog_ms: np.ndarray | None = None,
    server_backlog_ms: np.ndarray | None = None,
    capacity: np.ndarray | None = None,
) -> SlotState:
    """A random slot: N = ``exit_ms.shape[0]`` ES, each link up with ``p_link`` (every device
    keeps one at least), rates U[20, 100] Mbit/s, tasks U[400, 800] kbit, device and ES
    backlogs U[0, 10] ms and capacities U[0.25, 1] unless given."""
    num_servers = exit_ms.shape[0]
    link = rng.random((num_devices, num_servers)) < p_link
    link[np.arange(num_devices), rng.integers(0, num_servers, num_devices)] = True
    rate = rng.uniform(20.0, 100.0, (num_devices, num_servers))
    if task_bits is None:
        task_bits = rng.uniform(4e5, 8e5, num_devices)
    if device_backlog_ms is None:
        device_backlog_ms = rng.uniform(0.0, 10.0, num_devices)
    if server_backlog_ms is None:
        server_backlog_ms = rng.uniform(0.0, 10.0, num_servers)
    if capacity is None:
        capacity = rng.uniform(0.25, 1.0, num_servers)
    return SlotState(
        device_ids=np.arange(num_devices),
        task_bits=np.asarray(task_bits, dtype=np.float64),
        deadline_ms=np.broadcast_to(np.asarray(deadline_ms, dtype=np.float64), num_devices).copy(),
        rate_mbps=rate,
        link=link,
        device_backlog_ms=np.asarray(device_backlog_ms, dtype=np.float64),
        server_backlog_ms=np.asarray(server_backlog_ms, dtype=np.float64),
        capacity=np.asarray(capacity, dtype=np.float64),
        exit_ms=np.asarray(exit_ms, dtype=np.float64),
        exit_accuracy=np.asarray(exit_accuracy, dtype=np.float64),
        rules=rules,
    )


@pytest.fixture
def hand_state():
    """Factory: ``hand_state(rules=..., server_backlog=18.0, link=None) -> SlotState``."""
    return make_hand_state


@pytest.fixture
def random_state():
    """Factory: ``random_state(rng, num_devices=, exit_ms=, exit_accuracy=, ...) -> SlotState``."""
    return make_random_state
