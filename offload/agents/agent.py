"""Agents for the MEC simulator: an actor, its slot encoder and the Algorithm 1 learner in one.

``make_agent(name="GRLE" | "GRL" | "DROOE" | "DROO", ...)`` builds an agent; ``agent.learn(state,
score)`` runs one slot of Algorithm 1 (decide and train), ``agent.act(state, score)`` decides
with the frozen actor and the critic (the quantised candidates scored by ``score``), and
``agent.greedy_action(state)`` is the actor's own argmax (no critic). Actors are saved as
safetensors with a JSON sidecar and reloaded with :func:`load_agent`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from offload.agents.droo import DROOActor, DROOConfig, encode_channel
from offload.agents.grle import GRLEActor, GRLEConfig, encode_slot
from offload.agents.learner import Learner, LearnerConfig, ScoreFn, StepResult

AGENT_NAMES = ("GRLE", "GRL", "DROOE", "DROO")


class LearningAgent:
    """An actor network with its encoder and learner; see the module docstring."""

    def __init__(
        self,
        name: str,
        actor: torch.nn.Module,
        encode: Callable[[Any], Any],
        learner_config: LearnerConfig,
        *,
        seed: int,
        meta: dict,
    ) -> None:
        self.name = name
        self.actor = actor
        self.encode = encode
        self.learner = Learner(actor, learner_config, seed=seed)
        self.meta = meta

    def learn(self, state: Any, score: ScoreFn) -> StepResult:
        """One slot of Algorithm 1: decide with actor + critic, remember, train every ω slots."""
        obs = self.encode(state)
        return self.learner.step(obs, obs.mask, score)

    def act(self, state: Any, score: ScoreFn) -> StepResult:
        """Decide with the actor and the critic (best quantised candidate), no learning."""
        obs = self.encode(state)
        return self.learner.decide(obs, obs.mask, score)

    def greedy_action(self, state: Any) -> np.ndarray:
        """The actor's own argmax over the valid options (no critic), (M,) int."""
        obs = self.encode(state)
        x = np.where(obs.mask, self.learner.relaxed(obs), -np.inf)
        return x.argmax(axis=1)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the actor to ``path`` (.safetensors) and its metadata to ``path`` .json."""
        path = Path(path).with_suffix(".safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        save_file({k: v.contiguous() for k, v in self.actor.state_dict().items()}, str(tmp))
        os.replace(tmp, path)
        meta_path = path.with_suffix(".json")
        tmp = meta_path.with_name(meta_path.name + ".tmp")
        tmp.write_text(json.dumps(self.meta, indent=2))
        os.replace(tmp, meta_path)
        return path


def make_agent(
    *,
    name: str,
    num_exits: int,
    num_devices: int | None = None,
    num_servers: int | None = None,
    seed: int = 0,
    learner: LearnerConfig = LearnerConfig(),
) -> LearningAgent:
    """Build GRLE, GRL, DROOE or DROO with freshly initialised weights (seeded).

    ``num_devices`` and ``num_servers`` are needed only by the DROO-type agents (fixed input).
    """
    if name not in AGENT_NAMES:
        raise ValueError(f"unknown agent {name!r}; choose one of {', '.join(AGENT_NAMES)}.")
    torch.manual_seed(seed)
    meta: dict[str, Any] = {
        "name": name,
        "num_exits": num_exits,
        "seed": seed,
        "learner": asdict(learner),
    }
    if name in ("GRLE", "GRL"):
        cfg = GRLEConfig(main_branch_only=name == "GRL")
        actor: torch.nn.Module = GRLEActor(cfg)
        meta["config"] = asdict(cfg)
        return LearningAgent(
            name, actor, lambda s: encode_slot(s, cfg), learner, seed=seed, meta=meta
        )
    if num_devices is None or num_servers is None:
        raise ValueError(f"{name} has a fixed input size: pass num_devices and num_servers.")
    dcfg = DROOConfig(
        num_devices=num_devices,
        num_servers=num_servers,
        num_exits=num_exits,
        main_branch_only=name == "DROO",
    )
    actor = DROOActor(dcfg)
    meta["config"] = asdict(dcfg)
    return LearningAgent(
        name, actor, lambda s: encode_channel(s, dcfg), learner, seed=seed, meta=meta
    )


def load_agent(path: str | os.PathLike) -> LearningAgent:
    """Rebuild an agent saved by :meth:`LearningAgent.save` (weights and configuration)."""
    path = Path(path).with_suffix(".safetensors")
    if not path.exists():
        raise FileNotFoundError(f"no saved actor at {path}; run an experiment with --out first.")
    meta = json.loads(path.with_suffix(".json").read_text())
    cfg = meta["config"]
    agent = make_agent(
        name=meta["name"],
        num_exits=meta["num_exits"],
        num_devices=cfg.get("num_devices"),
        num_servers=cfg.get("num_servers"),
        seed=meta["seed"],
        learner=LearnerConfig(**meta["learner"]),
    )
    agent.actor.load_state_dict(load_file(str(path)))
    return agent
