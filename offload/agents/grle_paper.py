"""GRLE as the paper writes it (Section V-C, eqs. 12–14): GraphSAGE on the device–exit graph.

The slot graph has M device nodes and N·L exit nodes (option o = n·L + l: exit l on ES n) and an
edge device m — exit o wherever device m can reach ES n this slot and the option is allowed (GRL:
only the main branch l = L − 1). Where the slot state θ = {d, δ, r} and the exit information
enter (node features only; nothing is computed from them, no edge features):

- device node m: task size d (Mbit), deadline δ and uplink backlog (both ÷ ``time_scale_ms``),
  and the rates r_{m,n} of its up links folded into two numbers, their mean and their maximum
  (÷ ``rate_scale_mbps``). r is per link, but eq. (13) concatenates only the two node embeddings,
  so a per-link quantity has nowhere to go but a node; the device keeps the summary that does not
  depend on N (one actor for any N and topology). The price: the actor cannot tell *which* of
  its ESs has the faster link — the critic's search over S candidates still can, since it scores
  every candidate with the true rates. (``GRLEPlus`` keeps r per edge; the ablations compare.)
- exit node o = (n, l): accuracy φ_l, computation time t_cmp = exit_ms / capacity (eq. 4, ÷
  ``time_scale_ms``) and the backlog of ES n (÷ ``time_scale_ms``), the ES status the paper's
  second-order neighbourhood argument is about.

Eq. (12), h_v' = ReLU(W · C(h_v, mean_{u ∈ N(v)} h_u)), is torch-geometric's ``SAGEConv`` with
mean aggregation and a root weight (``lin_r`` h_v + ``lin_l`` mean + b, i.e. W = [W_r W_l]).
Devices and exits carry different features, so each layer has one ``SAGEConv((in_src, in_dst),
out)`` per destination type (exits from devices, devices from exits), and messages flow both
ways along each edge: without the device-side update a device could not see "the other devices
at ES n" that the paper's two-layer argument relies on. Two layers (hidden 128 and 64, Section
VI-A), then eq. (13) h_e = C(h_src, h_dst) and eq. (14) x̂_e = σ(MLP₂(ReLU(MLP₁(h_e)))).

One layer function for both graph forms (:meth:`GRLEPaperActor.layer`, as ``SAGEConv.forward``
takes an ``edge_index`` or an ``adj_t``) and one forward. Dense: ``forward(x_device, x_exit,
edge_mask, params=stacked)`` takes the neighbour means with each ``SAGEConv``'s own aggregation
module (PyG's mean) over the graphs of K runs at once (node indices offset per graph, as
``Batch.from_data_list`` does) and applies the runs' stacked ``lin_l``/``lin_r`` weights with one
batched matmul per layer; one run is K = 1. Sparse (one city slot, ``forward(graph)``): the means
are ``spmm`` over the CSR adjacency and the classifier runs per edge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch_geometric.nn import SAGEConv
from torch_geometric.utils import spmm

from offload.agents.graph import SparseGraph, edge_list, f32, sparse_graph
from offload.agents.grle import option_mask, stacked_linear

PAPER_DEVICE_FEATURES = 5
PAPER_EXIT_FEATURES = 3
_FIELDS = ("x_device", "x_exit", "edge_mask")  # the forward's tensor inputs, in order
PAPER_DEVICE_AXES = (0, None, 0)  # their device axes in one slot's tensors (None: none)


@dataclass(frozen=True)
class GRLEPaperConfig:
    """Architecture and feature scaling of the paper's GRLE actor (defaults: Section VI-A)."""

    hidden_channels: tuple[int, int] = (128, 64)  # widths of the two layers of eq. (12)
    classifier_channels: int = 64  # width of MLP₁ in eq. (14)
    time_scale_ms: float = 30.0  # divides times (ms) to make features O(1)
    rate_scale_mbps: float = 100.0  # divides rates (Mbit/s)
    main_branch_only: bool = False  # True = GRL: only the main-branch exit (l = L − 1)


def paper_node_features(
    state: Any, mask: np.ndarray, config: GRLEPaperConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Device (..., M, 5) and exit (..., N·L, 3) features of one slot or of K stacked slots
    (``SlotState`` or ``BatchState`` fields; ``mask`` (..., M, N·L) the edge mask), float64."""
    ts, rs = config.time_scale_ms, config.rate_scale_mbps
    link = np.asarray(state.link, dtype=bool)
    rate = np.where(link, np.asarray(state.rate_mbps, dtype=np.float64), 0.0) / rs
    num_links = np.maximum(link.sum(axis=-1), 1)
    x_device = np.stack(
        [
            np.asarray(state.task_bits, dtype=np.float64) / 1e6,  # d, Mbit
            np.asarray(state.deadline_ms, dtype=np.float64) / ts,  # δ
            np.asarray(state.device_backlog_ms, dtype=np.float64) / ts,
            rate.sum(axis=-1) / num_links,  # mean r over the device's up links
            rate.max(axis=-1),  # max r over the device's up links
        ],
        axis=-1,
    )
    num_exits = np.asarray(state.exit_accuracy).shape[-1]
    num_options = mask.shape[-1]
    n_of_o, l_of_o = np.divmod(np.arange(num_options), num_exits)
    t_cmp = np.asarray(state.exit_ms, dtype=np.float64) / np.asarray(state.capacity)[..., None]
    backlog = np.asarray(state.server_backlog_ms, dtype=np.float64)
    acc = np.broadcast_to(
        np.asarray(state.exit_accuracy, dtype=np.float64)[l_of_o],
        backlog.shape[:-1] + (num_options,),
    )
    x_exit = np.stack([acc, t_cmp[..., n_of_o, l_of_o] / ts, backlog[..., n_of_o] / ts], axis=-1)
    return x_device, x_exit


def _edges(edge_mask: torch.Tensor) -> torch.Tensor:
    """Edge index (2, E) of G same-size graphs (G, M, O) as one disconnected graph: node
    indices are offset by g·M (devices) and g·O (exits), as ``Batch.from_data_list`` does."""
    g, m, o = torch.nonzero(edge_mask > 0, as_tuple=True)
    num_devices, num_options = edge_mask.shape[-2:]
    return torch.stack([g * num_devices + m, g * num_options + o])


class GRLEPaperActor(nn.Module):
    """The paper's GRLE actor: two ``SAGEConv`` layers of eq. (12), eqs. (13)–(14)."""

    def __init__(self, config: GRLEPaperConfig = GRLEPaperConfig()) -> None:
        super().__init__()
        self.config = config
        h1, h2 = config.hidden_channels
        dev, ex = PAPER_DEVICE_FEATURES, PAPER_EXIT_FEATURES
        # layer i: one SAGEConv per destination node type (see the module docstring)
        self.conv1_exit = SAGEConv((dev, ex), h1)  # device -> exit messages
        self.conv1_device = SAGEConv((ex, dev), h1)  # exit -> device messages
        self.conv2_exit = SAGEConv((h1, h1), h2)
        self.conv2_device = SAGEConv((h1, h1), h2)
        self.mlp1 = nn.Linear(2 * h2, config.classifier_channels)
        self.mlp2 = nn.Linear(config.classifier_channels, 1)

    def forward(
        self,
        *graph: torch.Tensor | SparseGraph,
        params: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """x̂ of either graph form (:mod:`offload.agents.graph`): (..., M, O) from node
        features (..., M, 5), (..., O, 3) and the edge mask (..., M, O) with any leading axes,
        zero off the edges, or (E,) on the edges of one
        :class:`~offload.agents.graph.SparseGraph` (``edge_index`` order). ``params``: K runs'
        weights stacked on a leading axis (names as in ``state_dict``; dense form), the inputs
        then leading with the same K (:class:`~offload.agents.learner.Learner`)."""
        p = params if params is not None else dict(self.named_parameters())
        if isinstance(graph[0], SparseGraph):
            g = graph[0]
            h_dev, h_exit = g.x_device, g.x_exit
            for i in (1, 2):
                h_dev, h_exit = self.layer(i, h_dev, h_exit, (g.adj_device, g.adj_exit), p)
            dev, opt = g.edge_index
            h2 = h_dev.shape[-1]
            w, b = p["mlp1.weight"], p["mlp1.bias"]
            linear = nn.functional.linear
            z = linear(h_dev, w[:, :h2])[dev]
            z += linear(h_exit, w[:, h2:], b)[opt]
            z = linear(z.relu_(), p["mlp2.weight"], p["mlp2.bias"])
            return torch.sigmoid(z).squeeze(-1)
        x_device, x_exit, edge_mask = graph
        lead = edge_mask.shape[:-2]
        num_devices, num_options = edge_mask.shape[-2:]
        runs = lead[0] if params is not None else 1
        edge_index = _edges(edge_mask.reshape(-1, num_devices, num_options))
        h_dev = x_device.reshape(runs, -1, x_device.shape[-1])  # (runs, G/runs·M, F)
        h_exit = x_exit.reshape(runs, -1, x_exit.shape[-1])
        for i in (1, 2):
            h_dev, h_exit = self.layer(i, h_dev, h_exit, edge_index, p)
        # eqs. (13)-(14) for all M×O pairs: MLP₁ of a concatenation is the sum of its column blocks
        h2 = h_dev.shape[-1]
        shape_dev = (runs, -1, num_devices, h2)
        shape_exit = (runs, -1, num_options, h2)
        w, b = p["mlp1.weight"], p["mlp1.bias"]
        z_dev = stacked_linear(h_dev, w[..., :h2]).reshape(shape_dev).unsqueeze(-2)
        z_exit = stacked_linear(h_exit, w[..., h2:], b).reshape(shape_exit).unsqueeze(-3)
        z = torch.relu(z_dev + z_exit)  # (runs, G/runs, M, O, C)
        z = stacked_linear(z.reshape(runs, -1, z.shape[-1]), p["mlp2.weight"], p["mlp2.bias"])
        out = torch.sigmoid(z).reshape(*lead, num_devices, num_options)
        return out * edge_mask

    def layer(
        self,
        i: int,
        h_dev: torch.Tensor,
        h_exit: torch.Tensor,
        edges: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
        params: Mapping[str, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. (12), layer i, for both node types: h_v' = ReLU(W_r h_v + W_l mean_{u ∈ N(v)} h_u
        + b), in either graph form, as ``SAGEConv.forward`` takes an ``edge_index`` or an
        ``adj_t``: ``edges`` is the edge index (2, E) = [device, option] over the flattened
        nodes of K runs' graphs (``h_dev`` (K, D, F), ``h_exit`` (K, X, F'); the means from the
        layer's own PyG aggregation, ``SAGEConv.aggr_module``), or one graph's sparse CSR
        adjacency pair (adj_device (M, O), adj_exit (O, M); ``h_dev`` (M, F), ``h_exit``
        (O, F'); the means from ``spmm``, what ``SAGEConv`` does with an ``adj_t``).
        ``params``: one run's weights or K runs' stacked weights."""
        conv_exit = getattr(self, f"conv{i}_exit")
        conv_dev = getattr(self, f"conv{i}_device")
        if isinstance(edges, tuple):
            adj_device, adj_exit = edges
            mean_at_exit = spmm(adj_exit, h_dev, reduce=conv_exit.aggr)
            mean_at_dev = spmm(adj_device, h_exit, reduce=conv_dev.aggr)
        else:
            src, dst = edges
            flat_dev = h_dev.reshape(-1, h_dev.shape[-1])
            flat_exit = h_exit.reshape(-1, h_exit.shape[-1])
            mean_at_exit = conv_exit.aggr_module(flat_dev[src], dst, dim_size=flat_exit.shape[0])
            mean_at_dev = conv_dev.aggr_module(flat_exit[dst], src, dim_size=flat_dev.shape[0])
            mean_at_exit = mean_at_exit.reshape(*h_exit.shape[:-1], mean_at_exit.shape[-1])
            mean_at_dev = mean_at_dev.reshape(*h_dev.shape[:-1], mean_at_dev.shape[-1])
        new_exit = _sage(params, f"conv{i}_exit.", mean_at_exit, h_exit)
        new_dev = _sage(params, f"conv{i}_device.", mean_at_dev, h_dev)
        return torch.relu(new_dev), torch.relu(new_exit)


def _sage(p: Mapping[str, torch.Tensor], prefix: str, mean: torch.Tensor, root: torch.Tensor):
    """SAGEConv's lin_l(mean) + lin_r(root), with one run's or K runs' stacked weights."""
    lin_l = stacked_linear(mean, p[prefix + "lin_l.weight"], p[prefix + "lin_l.bias"])
    return lin_l + stacked_linear(root, p[prefix + "lin_r.weight"])


def encode_paper_batch(state: Any, config: GRLEPaperConfig = GRLEPaperConfig()):
    """The paper actor's input for K runs (``BatchState``): tensors (x_device, x_exit,
    edge_mask) with a leading K axis and the (K, M, N·L) option mask (one slot: a batch of
    one, ``BatchState.of``)."""
    mask = option_mask(state, main_branch_only=config.main_branch_only)
    x_device, x_exit = paper_node_features(state, mask, config)
    return (f32(x_device), f32(x_exit), f32(mask)), mask


def encode_paper_sparse(state: Any, config: GRLEPaperConfig = GRLEPaperConfig()) -> SparseGraph:
    """The paper actor's sparse slot graph of one ``SlotState``: the node features of
    :func:`paper_node_features` and the reachable edges (no M×O array)."""
    edges = edge_list(state, main_branch_only=config.main_branch_only)
    num_options = state.num_servers * state.num_exits
    shape_only = np.broadcast_to(False, (state.num_devices, num_options))  # no dense mask built
    return sparse_graph(edges, *paper_node_features(state, shape_only, config))
