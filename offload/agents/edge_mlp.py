"""An MLP actor on GRLE+'s features: GRLE+ without message passing (the "does the graph help?"
ablation).

Each (device m, option o) pair is scored from its own features alone,
x̂[m, o] = σ(MLP([x_device[m] ‖ x_exit[o] ‖ e_mo])) with the device, exit and edge features of
:func:`offload.agents.grle.encode_slot_batch` (GRLE+'s encoder, so the inputs are identical) and
hidden widths (128, 64), ReLU. No neighbour is aggregated, so a device never sees the other
devices competing for its ES; the learner, quantiser and critic are the shared ones. Like GRLE+ it
has no size baked in and runs for any M, N·L and topology.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from offload.agents.graph import SparseGraph
from offload.agents.grle import (
    DENSE_FIELDS,
    DEVICE_FEATURES,
    EDGE_FEATURES,
    EXIT_FEATURES,
    GRLEConfig,
    stacked_linear,
)

MLP_HIDDEN = (128, 64)  # hidden widths (the GRLE+ actor's layer widths)


class EdgeMLPActor(nn.Module):
    """x̂ per (device, option) pair from that pair's GRLE+ features only (see module docstring)."""

    def __init__(self, config: GRLEConfig = GRLEConfig()) -> None:
        super().__init__()
        self.config = config  # GRLE+'s feature scaling and option set (main_branch_only)
        h1, h2 = MLP_HIDDEN
        self.lin1 = nn.Linear(DEVICE_FEATURES + EXIT_FEATURES + EDGE_FEATURES, h1)
        self.lin2 = nn.Linear(h1, h2)
        self.lin3 = nn.Linear(h2, 1)

    def forward(
        self, *graph: torch.Tensor | SparseGraph, params: Mapping[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """x̂ of either graph form (:mod:`offload.agents.graph`): (..., M, O) from GRLE+'s dense
        tensors (:data:`~offload.agents.grle.DENSE_FIELDS`, any leading axes), zero off the
        edges, or (E,) on the edges of one :class:`~offload.agents.graph.SparseGraph`.
        ``params``: K runs' stacked weights (dense form; :class:`~offload.agents.learner.Learner`)."""
        p = params if params is not None else dict(self.named_parameters())
        if isinstance(graph[0], SparseGraph):
            g = graph[0]
            dev, opt = g.edge_index
            x = torch.cat([g.x_device[dev], g.x_exit[opt], g.edge_attr], dim=-1)
            return self._mlp(x, p).squeeze(-1)
        fields = dict(zip(DENSE_FIELDS, graph, strict=True))
        x_dev, x_exit = fields["x_device"], fields["x_exit"]
        edge, edge_mask = fields["edge_attr_dense"], fields["edge_mask"]
        num_devices, num_options = edge_mask.shape[-2:]
        x = torch.cat(
            [
                x_dev.unsqueeze(-2).expand(*x_dev.shape[:-1], num_options, x_dev.shape[-1]),
                x_exit.unsqueeze(-3).expand(*x_exit.shape[:-2], num_devices, *x_exit.shape[-2:]),
                edge,
            ],
            dim=-1,
        )
        return self._mlp(x, p).squeeze(-1) * edge_mask

    @staticmethod
    def _mlp(x: torch.Tensor, p: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """σ(MLP(x)) on the last axis (one run's or K runs' stacked weights)."""
        for i in (1, 2):
            x = torch.relu(stacked_linear(x, p[f"lin{i}.weight"], p[f"lin{i}.bias"]))
        return torch.sigmoid(stacked_linear(x, p["lin3.weight"], p["lin3.bias"]))
