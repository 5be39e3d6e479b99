"""MEC offloading simulator of the GRLE paper (Sections III-IV, VI): configuration, the
agent-visible slot state, the vectorised slot evaluator, the exact per-slot optimum, the
Gymnasium environment, metrics and baselines, a lockstep batch of environments, and a
city-scale network with its references. It never imports an agent."""

from .batch import (
    BatchEnv,
    BatchMetrics,
    BatchState,
    BatchStepInfo,
    batch_greedy,
    batch_random,
    batch_score,
    batch_task_rewards,
)
from .city import CityConfig
from .city_env import CityEnv, CityGymEnv
from .config import MECConfig
from .env import OffloadEnv, SlotEnv
from .evaluator import psi, score_decisions
from .optimum import Optimum, brute_force_decision, optimal_decision
from .state import SlotOutcome, SlotState

__all__ = [
    "BatchEnv",
    "BatchMetrics",
    "BatchState",
    "BatchStepInfo",
    "CityConfig",
    "CityEnv",
    "CityGymEnv",
    "MECConfig",
    "OffloadEnv",
    "Optimum",
    "SlotOutcome",
    "SlotEnv",
    "SlotState",
    "batch_greedy",
    "batch_random",
    "batch_score",
    "batch_task_rewards",
    "brute_force_decision",
    "optimal_decision",
    "psi",
    "score_decisions",
]
