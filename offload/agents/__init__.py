"""Offloading agents: the Algorithm 1 learner and the GRLE (paper and GRLE+), GRL, DROOE and DROO
actors."""

from offload.agents.agent import (
    ACTOR_KIND,
    AGENT_NAMES,
    ALL_AGENT_NAMES,
    LearningAgent,
    StepResult,
    load_agent,
    make_agent,
)
from offload.agents.learner import (
    DROO_PUBLISHED,
    ActorInput,
    Learner,
    LearnerConfig,
    ReplayMemory,
    quantise,
)

__all__ = [
    "ACTOR_KIND",
    "ActorInput",
    "AGENT_NAMES",
    "ALL_AGENT_NAMES",
    "DROO_PUBLISHED",
    "Learner",
    "LearnerConfig",
    "LearningAgent",
    "ReplayMemory",
    "StepResult",
    "load_agent",
    "make_agent",
    "quantise",
]
