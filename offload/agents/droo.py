"""DROOE and DROO: DROO's fully connected actor over the channel state (Huang, Bi, Zhang 2020).

As the seed paper describes them, these baselines see only the wireless channel: the input is
the (M, N) uplink-rate matrix (0 where a link is down), scaled by ``rate_scale_mbps`` and
flattened. The network is DROO's ``[in, 120, 80, out]`` with ReLU hidden layers and sigmoid
outputs; DROOE has one output per (device, ES, exit) (out = M·N·L), DROO one per (device, ES)
wired to the main-branch exit (l = L − 1). Everything else — quantiser, critic, replay memory,
cross-entropy training — is the shared :mod:`offload.agents.learner`, so the only differences
from GRLE are the input (channel only) and the network shape. The input size is fixed: a DROO
actor runs only at the M and N it was built for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from offload.agents.grle import option_mask, stacked_linear


@dataclass(frozen=True)
class DROOConfig:
    """Shape of the DROO actor (hidden widths as in DROO's ``[N, 120, 80, N]``)."""

    num_devices: int  # M the actor is built for (fixed input size)
    num_servers: int  # N
    num_exits: int  # L, options per ES in the decision space
    hidden_channels: tuple[int, int] = (120, 80)  # DROO's hidden widths
    rate_scale_mbps: float = 100.0  # divides rates (Mbit/s)
    main_branch_only: bool = False  # True = DROO (main branch only), False = DROOE


class ChannelObs(NamedTuple):
    """The encoded channel state and the option mask of one slot."""

    x: torch.Tensor  # (M·N,) float32 scaled rates, 0 where a link is down
    mask: np.ndarray  # (M, N·L) bool


def encode_channel(state: Any, config: DROOConfig) -> ChannelObs:
    """Flatten the rates of a ``SlotState``; raises if M or N differ from the actor's."""
    rate = np.asarray(state.rate_mbps, dtype=np.float64)
    if rate.shape != (config.num_devices, config.num_servers):
        raise ValueError(
            f"this DROO actor was built for {config.num_devices} devices and {config.num_servers} "
            f"servers but the slot has {rate.shape[0]} and {rate.shape[1]}; DROO's input size is "
            "fixed, so build and train a new actor for this size (or use GRLE)."
        )
    link = np.asarray(state.link, dtype=bool)
    x = np.where(link, rate, 0.0).reshape(-1) / config.rate_scale_mbps
    return ChannelObs(
        torch.from_numpy(x.astype(np.float32)),
        option_mask(state, main_branch_only=config.main_branch_only),
    )


class DROOActor(nn.Module):
    """Fully connected actor: channel state (M·N) → x̂ for every (device, option) it may choose."""

    def __init__(self, config: DROOConfig) -> None:
        super().__init__()
        self.config = config
        m, n, l_ = config.num_devices, config.num_servers, config.num_exits
        self.num_options = n * l_
        options = np.arange(self.num_options)
        if config.main_branch_only:
            options = options[options % l_ == l_ - 1]
        self.num_outputs = len(options)  # per device
        # x̂ over all K options = outputs @ selection (exact: one 1 per column at most)
        self._selection = torch.zeros((len(options), self.num_options))
        self._selection[torch.arange(len(options)), torch.from_numpy(options)] = 1.0
        h1, h2 = config.hidden_channels
        self.net = nn.Sequential(
            nn.Linear(m * n, h1),
            nn.ReLU(),
            nn.Linear(h1, h2),
            nn.ReLU(),
            nn.Linear(h2, m * self.num_outputs),
            nn.Sigmoid(),
        )

    def forward(
        self, x: torch.Tensor, params: Mapping[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """x̂ (..., M, K) from scaled rates (..., M·N), any leading axes; zero at the options the
        actor does not output. ``params``: K runs' weights stacked on a leading axis (names as in
        ``state_dict``), x then (K, ..., M·N): K actors in one pass (the lockstep learner)."""
        if params is None:
            p = self.net(x)
        else:
            p = x
            for i, layer in enumerate(self.net):
                if isinstance(layer, nn.Linear):
                    p = stacked_linear(p, params[f"net.{i}.weight"], params[f"net.{i}.bias"])
                else:
                    p = layer(p)
        p = p.unflatten(-1, (self.config.num_devices, self.num_outputs))
        return p @ self._selection

    def relaxed(self, obs: ChannelObs) -> torch.Tensor:
        """(M, K) x̂ of one slot."""
        return self(obs.x[None])[0]

    def relaxed_batch(self, batch: Sequence[ChannelObs]) -> torch.Tensor:
        """(B·M, K) x̂ of several slots."""
        return self(torch.stack([o.x for o in batch])).flatten(0, 1)
