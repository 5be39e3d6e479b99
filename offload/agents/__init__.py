"""Offloading agents: the Algorithm 1 learner and the GRLE (paper and GRLE+), GRL, DROOE and DROO
actors."""

from offload.agents.agent import (
    ACTOR_KINDS,
    AGENT_NAMES,
    ALL_AGENT_NAMES,
    GRAPH_ACTOR,
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
    "ACTOR_KINDS",
    "ActorInput",
    "AGENT_NAMES",
    "ALL_AGENT_NAMES",
    "DROO_PUBLISHED",
    "GRAPH_ACTOR",
    "Learner",
    "LearnerConfig",
    "LearningAgent",
    "ReplayMemory",
    "StepResult",
    "load_agent",
    "make_agent",
    "quantise",
]
