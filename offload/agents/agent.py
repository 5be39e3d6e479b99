"""Agents for the MEC simulator: an actor, its slot encoder and the Algorithm 1 learner in one.

``make_agent(name=..., ...)`` builds an agent; ``agent.learn(state, score)`` runs one slot of
Algorithm 1 (decide and train), ``agent.act(state, score)`` decides with the frozen actor and the
critic (the quantised candidates scored by ``score``), and ``agent.greedy_action(state)`` is the
actor's own argmax (no critic). Actors are saved as safetensors with a JSON sidecar and reloaded
with :func:`load_agent`.

Methods and actor kinds (docs/offload-agents.md):

========  ==============  ==========================================================================
method    actor kind      network
========  ==============  ==========================================================================
GRLE      ``grle_paper``  :class:`~offload.agents.grle_paper.GRLEPaperActor`, eqs. (12)–(14) as
                          written; all exits
GRL       ``grle_paper``  the same, main branch only
GRLE+     ``grle_plus``   :class:`~offload.agents.grle.GRLEActor`: typed weights, engineered edge
                          features (not the paper's eqs. 12–13); all exits
GRLE-MLP  ``edge_mlp``    :class:`~offload.agents.edge_mlp.EdgeMLPActor` on GRLE+'s features, no
                          message passing (ablation)
DROOE     ``droo``        :class:`~offload.agents.droo.DROOActor`, all exits
DROO      ``droo``        the same, main branch only
========  ==============  ==========================================================================

The saved sidecar names the actor kind, so :func:`load_agent` rebuilds the network that was saved.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from grle_common.fileio import atomic_write, write_text_atomic
from offload.agents.droo import DROOActor, DROOConfig, encode_channel_batch
from offload.agents.edge_mlp import EdgeMLPActor
from offload.agents.grle import DENSE_DEVICE_AXES, GRLEActor, GRLEConfig, encode_slot_batch
from offload.agents.grle_paper import (
    PAPER_DEVICE_AXES,
    GRLEPaperActor,
    GRLEPaperConfig,
    encode_paper_batch,
)
from offload.agents.learner import ActorInput, Learner, LearnerConfig, Step
from offload.sim.state import BatchState, SlotState

OneRunScore = Callable[[np.ndarray], np.ndarray]
"""Scores one slot's candidates: int (S, M) -> float (S,) (higher is better, -inf infeasible)."""

#: the learning methods of the paper's experiments (``offload.experiments``)
AGENT_NAMES = ("GRLE", "GRLE+", "GRL", "DROOE", "DROO")
#: every method :func:`make_agent` builds (GRLE-MLP: the ablation and scale experiments)
ALL_AGENT_NAMES = AGENT_NAMES + ("GRLE-MLP",)
#: method name -> actor kind (module docstring)
ACTOR_KIND = {
    "GRLE": "grle_paper",
    "GRL": "grle_paper",
    "GRLE+": "grle_plus",
    "GRLE-MLP": "edge_mlp",
    "DROOE": "droo",
    "DROO": "droo",
}
_MAIN_BRANCH_ONLY = {"GRL", "DROO"}


class StepResult(NamedTuple):
    """What one slot of Algorithm 1 produced for one run."""

    decision: np.ndarray  # (M,) int, the action taken (best candidate)
    q: float  # its score
    best_index: int  # index of the winning candidate (0 = actor's argmax)
    loss: float | None  # training loss of eq. (16) if the actor trained this slot


def input_encoder(actor: torch.nn.Module) -> Callable[[SlotState | BatchState], ActorInput]:
    """The encoder of an actor's kind: one slot (a ``SlotState``, a batch of one) or K slots
    (a ``BatchState``) -> :class:`~offload.agents.learner.ActorInput`."""
    cfg = actor.config

    def encode(state: SlotState | BatchState) -> ActorInput:
        one = isinstance(state, SlotState)
        batch = BatchState.of(state) if one else state
        if isinstance(cfg, GRLEPaperConfig):
            return ActorInput(*encode_paper_batch(batch, cfg), PAPER_DEVICE_AXES)
        if isinstance(cfg, GRLEConfig):  # GRLE+ and the edge MLP share GRLE+'s encoder
            return ActorInput(*encode_slot_batch(batch, cfg), DENSE_DEVICE_AXES)
        ids = state.device_ids[None] if one else None  # a padded DROO places devices by id
        tensors, mask = encode_channel_batch(batch, cfg, ids)
        return ActorInput(tensors, mask, (None, 0)[: len(tensors)])

    return encode


class LearningAgent:
    """An actor network with its encoder and learner for one run (the learner with K = 1);
    see the module docstring."""

    def __init__(
        self,
        name: str,
        actor: torch.nn.Module,
        learner_config: LearnerConfig,
        *,
        seed: int,
        meta: dict,
    ) -> None:
        self.name = name
        self.actor = actor
        self.encode = input_encoder(actor)
        self.learner = Learner([actor], learner_config, [seed])
        self.meta = meta

    def learn(self, state: SlotState, score: OneRunScore) -> StepResult:
        """One slot of Algorithm 1: decide with actor + critic, remember, train every ω slots."""
        return _one(self.learner.step(self.encode(state), _as_runs(score)))

    def act(
        self, state: SlotState, score: OneRunScore, *, num_candidates: int | None = None
    ) -> StepResult:
        """Decide with the actor and the critic (best quantised candidate), no learning;
        ``num_candidates`` overrides the learner's S for this decision."""
        obs = self.encode(state)
        return _one(self.learner.decide(obs, _as_runs(score), num_candidates=num_candidates))

    def greedy_action(self, state: SlotState) -> np.ndarray:
        """The actor's own argmax over the valid options (no critic), (M,) int."""
        obs = self.encode(state)
        return np.where(obs.mask, self.learner.relaxed(obs), -np.inf)[0].argmax(axis=1)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the actor to ``path`` (.safetensors) and its metadata to ``path`` .json."""
        path = Path(path).with_suffix(".safetensors")
        tensors = {k: v.contiguous() for k, v in self.actor.state_dict().items()}
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))
        write_text_atomic(path.with_suffix(".json"), json.dumps(self.meta, indent=2))
        return path


def _as_runs(score: OneRunScore) -> Callable[[np.ndarray], np.ndarray]:
    """A one-slot score as the learner's (1, S, M) -> (1, S)."""
    return lambda cands: np.asarray(score(cands[0]), dtype=np.float64)[None]


def _one(step: Step) -> StepResult:
    """The learner's step of one run as a :class:`StepResult`."""
    loss = None if step.loss is None else float(step.loss[0])
    return StepResult(step.decisions[0], float(step.q[0]), int(step.best_index[0]), loss)


def make_agent(
    *,
    name: str,
    num_exits: int,
    num_devices: int | None = None,
    num_servers: int | None = None,
    seed: int = 0,
    learner: LearnerConfig = LearnerConfig(),
    actor_options: Mapping[str, Any] | None = None,
) -> LearningAgent:
    """Build one of :data:`ALL_AGENT_NAMES` with freshly initialised weights (seeded).

    Args:
        name: the method (decides the actor kind, :data:`ACTOR_KIND`, and the option set:
            main branch only for GRL and DROO).
        num_exits: L, exits per ES.
        num_devices, num_servers: M and N, needed only by the DROO-type actors (fixed input).
        seed: seeds the weights and the replay sampling.
        learner: Algorithm 1's hyper-parameters.
        actor_options: fields of the actor's config dataclass to override, e.g.
            ``{"per_user_sigmoid": True, "max_devices": 20}`` for DROO.

    Raises:
        ValueError: unknown name or option, or a DROO without M and N.
    """
    if name not in ALL_AGENT_NAMES:
        raise ValueError(f"unknown agent {name!r}; choose one of {', '.join(ALL_AGENT_NAMES)}.")
    kind = ACTOR_KIND[name]
    main_branch_only = name in _MAIN_BRANCH_ONLY
    if kind == "grle_paper":
        cfg: Any = GRLEPaperConfig(main_branch_only=main_branch_only)
    elif kind in ("grle_plus", "edge_mlp"):
        cfg = GRLEConfig(main_branch_only=main_branch_only)
    else:
        if num_devices is None or num_servers is None:
            raise ValueError(f"{name} has a fixed input size: pass num_devices and num_servers.")
        cfg = DROOConfig(
            num_devices=num_devices,
            num_servers=num_servers,
            num_exits=num_exits,
            main_branch_only=main_branch_only,
        )
    if actor_options:
        known = {f.name for f in fields(cfg)}
        unknown = sorted(set(actor_options) - known)
        if unknown:
            raise ValueError(
                f"actor option(s) {', '.join(unknown)} do not exist for a {kind} actor; choose "
                f"from {', '.join(sorted(known))}."
            )
        cfg = replace(cfg, **actor_options)
    return _build(name, kind, cfg, num_exits=num_exits, seed=seed, learner=learner)


def _build(
    name: str, kind: str, cfg: Any, *, num_exits: int, seed: int, learner: LearnerConfig
) -> LearningAgent:
    torch.manual_seed(seed)
    meta: dict[str, Any] = {
        "name": name,
        "actor": kind,
        "num_exits": num_exits,
        "seed": seed,
        "learner": asdict(learner),
        "config": asdict(cfg),
    }
    net: torch.nn.Module = _ACTORS[kind](cfg)
    return LearningAgent(name, net, learner, seed=seed, meta=meta)


_ACTORS = {
    "grle_paper": GRLEPaperActor,
    "grle_plus": GRLEActor,
    "edge_mlp": EdgeMLPActor,
    "droo": DROOActor,
}
_CONFIGS = {
    "grle_paper": GRLEPaperConfig,
    "grle_plus": GRLEConfig,
    "edge_mlp": GRLEConfig,
    "droo": DROOConfig,
}


def load_agent(path: str | os.PathLike) -> LearningAgent:
    """Rebuild an agent saved by :meth:`LearningAgent.save` (weights and configuration).

    Raises:
        FileNotFoundError: no saved actor at ``path``.
    """
    path = Path(path).with_suffix(".safetensors")
    if not path.exists():
        raise FileNotFoundError(f"no saved actor at {path}; run an experiment with --out first.")
    meta = json.loads(path.with_suffix(".json").read_text())
    kind = meta["actor"]
    tuples = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()}
    # GRLE+ sidecars in results/ name the neighbour mean GRLEConfig offered then ("dense", the
    # only one it computes now)
    tuples.pop("aggregation", None)
    learner = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["learner"].items()}
    agent = _build(
        meta["name"],
        kind,
        _CONFIGS[kind](**tuples),
        num_exits=meta["num_exits"],
        seed=meta["seed"],
        learner=LearnerConfig(**learner),
    )
    agent.actor.load_state_dict(load_file(str(path)))
    return agent
