"""Offloading agents: the Algorithm 1 learner and the GRLE, GRL, DROOE and DROO actors."""

from offload.agents.agent import AGENT_NAMES, LearningAgent, load_agent, make_agent
from offload.agents.learner import Learner, LearnerConfig, ReplayMemory, StepResult, quantise

__all__ = [
    "AGENT_NAMES",
    "Learner",
    "LearnerConfig",
    "LearningAgent",
    "ReplayMemory",
    "StepResult",
    "load_agent",
    "make_agent",
    "quantise",
]
