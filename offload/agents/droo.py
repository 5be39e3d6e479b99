"""DROOE and DROO: DROO's fully connected actor over the channel state (Huang, Bi, Zhang 2020).

As the seed paper describes them, these baselines see only the wireless channel: the input is
the (M, N) uplink-rate matrix (0 where a link is down), scaled by ``rate_scale_mbps`` and
flattened. The network is DROO's ``[in, 120, 80, out]`` with ReLU hidden layers and sigmoid
outputs; DROOE has one output per (device, ES, exit) (out = M·N·L), DROO one per (device, ES)
wired to the main-branch exit (l = L − 1). Everything else — quantiser, critic, replay memory,
cross-entropy training — is the shared :mod:`offload.agents.learner`, so the only differences
from GRLE are the input (channel only) and the network shape. The input size is fixed: a DROO
actor runs only at the M and N it was built for — unless it is built *padded*.

Two options (both off by default, which is the actor of the committed results):

- ``per_user_sigmoid``: DROO's own output layer, one sigmoid p_m per device for a device with
  exactly two options (DROO's local/offload; here DROO with N = 2 ESs, main branch only: ES 0 or
  ES 1). x̂[m] = (1 − p_m, p_m) over the two options, so eq. (16) over both equals DROO's
  binary cross-entropy of p_m, and the quantiser reduces to DROO's rule.
- ``max_devices`` (padded input, the topology experiment's counter-baseline to GRLE): the input
  is sized for ``max_devices`` device rows; device m of a slot (global id ``device_ids[m]``)
  fills row ``device_ids[m]``, absent devices' rows are 0 (as a down link), and only the active
  devices' output rows are read, so an absent device's output is never used. One actor then runs
  at any M ≤ ``max_devices`` and in the dynamic topology (untrained rows stay untrained).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from offload.agents.grle import option_mask, stacked_linear
from offload.sim.state import BatchState


@dataclass(frozen=True)
class DROOConfig:
    """Shape of the DROO actor (hidden widths as in DROO's ``[N, 120, 80, N]``)."""

    num_devices: int  # M the actor is built for (fixed input size)
    num_servers: int  # N
    num_exits: int  # L, options per ES in the decision space
    hidden_channels: tuple[int, int] = (120, 80)  # DROO's hidden widths
    rate_scale_mbps: float = 100.0  # divides rates (Mbit/s)
    main_branch_only: bool = False  # True = DROO (main branch only), False = DROOE
    per_user_sigmoid: bool = False  # DROO's output: one sigmoid per device over its 2 options
    max_devices: int | None = None  # padded input for this many device rows (None: fixed M)

    @property
    def input_devices(self) -> int:
        """Device rows of the network's input and output (``max_devices`` or ``num_devices``)."""
        return self.num_devices if self.max_devices is None else self.max_devices


def device_rows(device_ids: np.ndarray, config: DROOConfig) -> np.ndarray:
    """The padded actor's input rows of the active devices; raises if an id does not fit."""
    ids = np.asarray(device_ids, dtype=np.int64)
    if ids.size and ids.max() >= config.input_devices:
        raise ValueError(
            f"device id {int(ids.max())} does not fit this DROO actor's {config.input_devices} "
            "padded device rows; build it with max_devices above the network's largest device id."
        )
    return ids


def encode_channel_batch(
    state: BatchState, config: DROOConfig, device_ids: np.ndarray | None = None
) -> tuple[tuple[torch.Tensor, ...], np.ndarray]:
    """DROO's input of K slots: the scaled rates (K, M·N) flattened, 0 where a link is down (a
    padded actor: (K, max_devices·N) with device m in input row ``device_ids[k, m]``, default
    m, and the rows as a second tensor (K, M)), and the (K, M, N·L) option mask.

    Raises:
        ValueError: M or N differ from the actor's (unpadded), or a device id does not fit.
    """
    rate = np.asarray(state.rate_mbps, dtype=np.float64)
    link = np.asarray(state.link, dtype=bool)
    mask = option_mask(state, main_branch_only=config.main_branch_only)
    num_runs, num_devices, num_servers = rate.shape
    scaled = np.where(link, rate, 0.0) / config.rate_scale_mbps
    if config.max_devices is not None and num_servers == config.num_servers:
        if device_ids is None:
            device_ids = np.broadcast_to(np.arange(num_devices), (num_runs, num_devices))
        rows = device_rows(device_ids, config)
        x = np.zeros((num_runs, config.max_devices, num_servers))
        x[np.arange(num_runs)[:, None], rows] = scaled
        x32 = torch.from_numpy(x.reshape(num_runs, -1).astype(np.float32))
        return (x32, torch.from_numpy(np.array(rows, dtype=np.int64))), mask
    if rate.shape[1:] != (config.num_devices, config.num_servers):
        raise ValueError(
            f"this DROO actor was built for {config.num_devices} devices and {config.num_servers} "
            f"servers but the slots have {num_devices} and {num_servers}; DROO's input size is "
            "fixed, so build and train a new actor for this size (or use GRLE)."
        )
    return (torch.from_numpy(scaled.reshape(num_runs, -1).astype(np.float32)),), mask


_ACTIVATIONS = {nn.ReLU: torch.relu, nn.Sigmoid: torch.sigmoid}  # the modules' functions


class DROOActor(nn.Module):
    """Fully connected actor: channel state (M·N) → x̂ for every (device, option) it may choose."""

    def __init__(self, config: DROOConfig) -> None:
        super().__init__()
        self.config = config
        m, n, l_ = config.input_devices, config.num_servers, config.num_exits
        self.num_options = n * l_
        options = np.arange(self.num_options)
        if config.main_branch_only:
            options = options[options % l_ == l_ - 1]
        self.num_outputs = len(options)  # per device
        if config.per_user_sigmoid and self.num_outputs != 2:
            raise ValueError(
                f"per_user_sigmoid needs exactly 2 options per device (DROO's binary choice) but "
                f"this actor has {self.num_outputs}; use N = 2 ESs with main_branch_only=True."
            )
        net_out = m if config.per_user_sigmoid else m * self.num_outputs
        # x̂ over all O options = outputs @ selection (exact: one 1 per column at most)
        self._selection = torch.zeros((len(options), self.num_options))
        self._selection[torch.arange(len(options)), torch.from_numpy(options)] = 1.0
        h1, h2 = config.hidden_channels
        self.net = nn.Sequential(
            nn.Linear(m * n, h1),
            nn.ReLU(),
            nn.Linear(h1, h2),
            nn.ReLU(),
            nn.Linear(h2, net_out),
            nn.Sigmoid(),
        )
        # the layers as functions of a parameter mapping: one forward for the module's own
        # parameters and for K runs' stacked ones, without the module-call overhead per layer
        self._layers = [
            f"net.{i}." if isinstance(layer, nn.Linear) else _ACTIVATIONS[type(layer)]
            for i, layer in enumerate(self.net)
        ]
        self._own_params = dict(self.named_parameters())  # same objects after load_state_dict

    def forward(
        self,
        x: torch.Tensor,
        rows: torch.Tensor | None = None,
        params: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """x̂ (..., M, O) from scaled rates (..., M·N), any leading axes; zero at the options the
        actor does not output. ``rows`` (..., M) int64 (padded actor): the output rows of the
        active devices. ``params``: K runs' weights stacked on a leading axis (names as in
        ``state_dict``), x then (K, ..., M·N): K actors in one pass (:class:`~offload.agents.learner.Learner`)."""
        weights = self._own_params if params is None else params
        p = x
        for layer in self._layers:
            if isinstance(layer, str):
                p = stacked_linear(p, weights[layer + "weight"], weights[layer + "bias"])
            else:
                p = layer(p)
        if self.config.per_user_sigmoid:
            p = p.unsqueeze(-1)
            p = torch.cat([1.0 - p, p], dim=-1)  # x̂ over the device's two options
        else:
            p = p.unflatten(-1, (self.config.input_devices, self.num_outputs))
        if rows is not None:
            p = torch.take_along_dim(p, rows.unsqueeze(-1), dim=-2)
        return p @ self._selection
