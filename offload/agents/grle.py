"""GRLE+: our graph actor with engineered edge features — NOT the paper's eqs. (12)–(13).

The paper's actor as written (the method GRLE) is :mod:`offload.agents.grle_paper`; this one
departs from eqs. (12)–(13) in three ways, each a design choice of ours: separate weights per
node type, edge features inside the aggregation and in the edge classifier, and edge features
*engineered* from the simulator's model (the completion time a task would have alone, its
reward φ·ψ and a success flag).

The slot graph has M device nodes and O = N·L exit nodes (option o = n·L + l: exit l on ES n),
with an edge device m → exit o wherever device m can reach ES n this slot and the option is
allowed (with ``main_branch_only``, only the main branch, l = L − 1, the last row of the exit
table). Every quantity of the slot state is on a node or an edge:

- device node m: task size d (Mbit), deadline δ (in units of ``time_scale_ms``), uplink backlog
  (in δ), degree / K;
- exit node o = (n, l): accuracy φ_l, computation time t_cmp = exit_ms / capacity (eq. 4 with the
  slot's available capacity), nominal exit_ms, ES backlog (all in ``time_scale_ms``), capacity,
  degree / M, M / 10;
- edge (m, o): rate r (in 100 Mbit/s), t_com = d / r (eq. 1), arrival time backlog + t_com
  (eq. 6), completion time if m were alone at the ES, max(arrival, ES backlog) + t_cmp (eq. 8),
  all in δ_m, and that lone completion's reward φ·ψ(t) (eq. 9) and success flag (eq. 11).

Two message-passing layers (hidden 128 and 64): h_v' = ReLU(W_type(v) [h_v ‖ mean over the
neighbours of (h_u ‖ e_uv)]), separate weights for device and exit nodes; then an edge classifier
x̂_e = σ(MLP₂(ReLU(MLP₁(h_src ‖ h_dst ‖ e)))) — the shape of eq. (14), with the edge features
added to eq. (13)'s concatenation. The network has no size baked in, so one actor runs for any
M, N·L and topology.

Each feature family is written once: node features for one slot or K stacked slots
(:func:`plus_node_features`) and edge features on an edge list (:func:`plus_edge_features`,
:func:`~offload.agents.graph.edge_list`). The actor's one forward takes either graph form
(:mod:`offload.agents.graph`). Dense (paper scale, training; a decision must take well under
1 ms): :func:`encode_slot_batch` scatters the edge features into a few dense tensors (no
per-slot ``Data`` objects), the mean aggregation is a product with the row-normalised adjacency
and the classifier is evaluated for all M×O pairs at once, masked to the edges. Sparse (city
scale, :func:`encode_plus_sparse`): the same features per edge, CSR means, the classifier per
edge. Slots of K runs, and a training mini-batch, are stacked on leading axes (replay
entries of fewer devices are zero-padded: a padded device has no edge, so it changes no mean).
Unlike the paper's actor (:mod:`offload.agents.grle_paper`, PyG's ``SAGEConv``), this actor does
not use torch-geometric: its mean is the dense product, which is also what its committed
results were computed with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from offload.agents.graph import Aggregation, EdgeList, SparseGraph, edge_list, f32, sparse_graph
from offload.sim.reward import psi
from offload.sim.state import BatchState

DEVICE_FEATURES = 4
EXIT_FEATURES = 7
EDGE_FEATURES = 6


@dataclass(frozen=True)
class GRLEConfig:
    """Architecture and feature scaling of the GRLE+ actor (widths: Section VI-A)."""

    hidden_channels: tuple[int, int] = (128, 64)  # widths of the two message-passing layers
    classifier_channels: int = 64  # width of MLP₁ in the edge classifier
    time_scale_ms: float = 30.0  # divides node-level times (ms) to make features O(1)
    rate_scale_mbps: float = 100.0  # divides rates (Mbit/s)
    main_branch_only: bool = False  # True: only the main-branch exit (l = L − 1)


def _sub(params: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``params`` under ``prefix``, with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}


def option_mask(state: Any, *, main_branch_only: bool = False) -> np.ndarray:
    """(..., M, N·L) bool: device m may take option o = n·L + l (link up, and l = L − 1 for
    GRL); one slot (M, N·L) or K slots (K, M, N·L)."""
    num_exits = state.exit_accuracy.shape[0]
    mask = np.repeat(np.asarray(state.link, dtype=bool), num_exits, axis=-1)
    if main_branch_only:
        mask[..., np.arange(mask.shape[-1]) % num_exits != num_exits - 1] = False
    return mask


def plus_node_features(
    state: Any, deg_dev: np.ndarray, deg_exit: np.ndarray, config: GRLEConfig
) -> tuple[np.ndarray, np.ndarray]:
    """GRLE+'s device (..., M, 4) and option (..., O, 7) features of one slot (``SlotState``) or
    K stacked slots (``BatchState``), given the node degrees (..., M) and (..., O); float64."""
    num_devices, num_options = deg_dev.shape[-1], deg_exit.shape[-1]
    num_exits = state.exit_accuracy.shape[-1]
    ts = config.time_scale_ms
    n_of_o, l_of_o = np.divmod(np.arange(num_options), num_exits)
    deadline = np.asarray(state.deadline_ms, dtype=np.float64)
    capacity = np.asarray(state.capacity, dtype=np.float64)  # (..., N)
    exit_ms = np.asarray(state.exit_ms, dtype=np.float64)  # (..., N, L)
    t_cmp = exit_ms / capacity[..., None]  # eq. (4)
    # features are written column by column into preallocated arrays (np.stack of many small
    # arrays costs more than the arithmetic at one slot; the values are the same)
    x_device = np.empty((*deg_dev.shape, DEVICE_FEATURES))
    x_device[..., 0] = np.asarray(state.task_bits, dtype=np.float64) / 1e6
    x_device[..., 1] = deadline / ts
    x_device[..., 2] = np.asarray(state.device_backlog_ms, dtype=np.float64) / deadline
    x_device[..., 3] = deg_dev / max(num_options, 1)
    x_exit = np.empty((*deg_exit.shape, EXIT_FEATURES))
    x_exit[..., 0] = np.asarray(state.exit_accuracy, dtype=np.float64)[l_of_o]
    x_exit[..., 1] = t_cmp[..., n_of_o, l_of_o] / ts
    x_exit[..., 2] = exit_ms[..., n_of_o, l_of_o] / ts
    x_exit[..., 3] = np.asarray(state.server_backlog_ms, dtype=np.float64)[..., n_of_o] / ts
    x_exit[..., 4] = capacity[..., n_of_o]
    x_exit[..., 5] = deg_exit / max(num_devices, 1)
    x_exit[..., 6] = num_devices / 10.0
    return x_device, x_exit


def plus_edge_features(state: Any, edges: EdgeList, config: GRLEConfig) -> np.ndarray:
    """GRLE+'s (E, 6) edge features on ``edges`` (:func:`~offload.agents.graph.edge_list` of
    one slot or of K stacked slots), float64: rate r, t_com = d / r (eq. 1), arrival backlog +
    t_com (eq. 6), the completion time were m alone at the ES (eq. 8), all in δ_m, and that
    lone completion's reward φ·ψ (eq. 9) and success flag (eq. 11)."""
    at_dev = (*edges.lead, edges.device)
    at_srv = (*edges.lead, edges.server)
    bits = np.asarray(state.task_bits, dtype=np.float64)[at_dev]
    dl = np.asarray(state.deadline_ms, dtype=np.float64)[at_dev]
    dev_backlog = np.asarray(state.device_backlog_ms, dtype=np.float64)[at_dev]
    srv_backlog = np.asarray(state.server_backlog_ms, dtype=np.float64)[at_srv]
    exit_ms = np.asarray(state.exit_ms, dtype=np.float64)[(*at_srv, edges.exit)]
    t_cmp = exit_ms / np.asarray(state.capacity, dtype=np.float64)[at_srv]  # eq. (4)
    rate = np.asarray(state.rate_mbps, dtype=np.float64)[(*at_dev, edges.server)]
    t_com = bits / (rate * 1e3)  # eq. (1)
    t_arr = dev_backlog + t_com  # eq. (6)
    t_done = np.maximum(t_arr, srv_backlog) + t_cmp  # eq. (8), alone
    attr = np.empty((edges.device.size, EDGE_FEATURES))
    attr[:, 0] = rate / config.rate_scale_mbps
    attr[:, 1] = t_com / dl
    attr[:, 2] = np.minimum(t_arr / dl, 5.0)
    attr[:, 3] = np.minimum(t_done / dl, 5.0)
    attr[:, 4] = np.asarray(state.exit_accuracy, dtype=np.float64)[edges.exit] * psi(t_done, dl)
    attr[:, 5] = t_done <= dl
    return attr


def encode_slot_batch(
    state: BatchState, config: GRLEConfig = GRLEConfig()
) -> tuple[tuple[torch.Tensor, ...], np.ndarray]:
    """GRLE+'s dense slot graphs of K slots: the actor's input tensors (:data:`DENSE_FIELDS`
    order, leading axis K) and the (K, M, N·L) option mask (the edges). The edge features are
    :func:`plus_edge_features` scattered into the (K, M, O, 6) layout, zero off the edges."""
    mask = option_mask(state, main_branch_only=config.main_branch_only)
    adj = mask.astype(np.float64)
    deg_dev = adj.sum(axis=2)  # (K, M)
    deg_exit = adj.sum(axis=1)  # (K, O)
    x_device, x_exit = plus_node_features(state, deg_dev, deg_exit, config)
    edges = edge_list(state, mask)
    dense_attr = np.zeros((*mask.shape, EDGE_FEATURES))
    dense_attr[(*edges.lead, edges.device, edges.option)] = plus_edge_features(state, edges, config)
    deg_dev1 = np.maximum(deg_dev, 1.0)[:, :, None]
    deg_exit1 = np.maximum(deg_exit, 1.0)[:, :, None]
    tensors = (
        f32(x_device),
        f32(x_exit),
        f32(adj / deg_dev1),  # adj_device (K, M, O)
        f32((adj / deg_exit1.transpose(0, 2, 1)).transpose(0, 2, 1)),  # adj_exit (K, O, M)
        f32(dense_attr.sum(axis=2) / deg_dev1),  # edge_mean_device (K, M, F)
        f32(dense_attr.sum(axis=1) / deg_exit1),  # edge_mean_exit (K, O, F)
        f32(dense_attr),  # edge_attr_dense (K, M, O, F)
        f32(adj),  # edge_mask (K, M, O)
    )
    return tensors, mask


def encode_plus_sparse(state: Any, config: GRLEConfig = GRLEConfig()) -> SparseGraph:
    """GRLE+'s sparse slot graph of one ``SlotState``: the features of
    :func:`encode_slot_batch` on the reachable edges only (no M×O array)."""
    edges = edge_list(state, main_branch_only=config.main_branch_only)
    num_options = state.num_servers * state.num_exits
    deg_dev = np.bincount(edges.device, minlength=state.num_devices).astype(np.float64)
    deg_exit = np.bincount(edges.option, minlength=num_options).astype(np.float64)
    x_device, x_exit = plus_node_features(state, deg_dev, deg_exit, config)
    return sparse_graph(edges, x_device, x_exit, plus_edge_features(state, edges, config))


def stacked_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None):
    """``F.linear`` for one layer (weight (out, in)) or for K runs' layers stacked (weight
    (K, out, in), bias (K, out), x (K, ..., in)): one batched matmul instead of K calls."""
    if weight.ndim == 2:
        return nn.functional.linear(x, weight, bias)
    if weight.shape[0] == 1:  # one run: the same bits as the batched matmul, less overhead
        return nn.functional.linear(x[0], weight[0], None if bias is None else bias[0])[None]
    rows = x.reshape(x.shape[0], -1, x.shape[-1])  # (K, P, in): one GEMM per run
    if bias is None:
        out = torch.bmm(rows, weight.transpose(1, 2))
    else:
        out = torch.baddbmm(bias.unsqueeze(1), rows, weight.transpose(1, 2))
    return out.reshape(*x.shape[:-1], weight.shape[1])


class BipartiteConv(nn.Module):
    """One message-passing layer of GRLE+ on the device–exit graph, both directions (typed
    weights and edge features: not eq. (12) as written).

    h_v' = ReLU(W_type(v) [h_v ‖ mean_{u ∈ N(v)} (h_u ‖ e_uv)]); the mean of the edge features
    does not depend on the layer, so it comes precomputed. ``params`` (this layer's weights with
    a leading run axis, names relative to the layer) evaluates K stacked copies at once.
    """

    def __init__(self, dev_in: int, exit_in: int, edge_dim: int, out_channels: int) -> None:
        super().__init__()
        self.lin_device = nn.Linear(dev_in + exit_in + edge_dim, out_channels)
        self.lin_exit = nn.Linear(exit_in + dev_in + edge_dim, out_channels)

    def forward(
        self,
        h_dev: torch.Tensor,
        h_exit: torch.Tensor,
        graph: Aggregation,
        params: Mapping[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        p = params if params is not None else dict(self.named_parameters())
        # node dimension -2, features -1: works for one graph and for stacked same-size graphs
        to_dev = torch.cat([graph.to_device(h_exit), graph.edge_mean_device], -1)
        to_exit = torch.cat([graph.to_exit(h_dev), graph.edge_mean_exit], -1)
        new_dev = stacked_linear(
            torch.cat([h_dev, to_dev], -1), p["lin_device.weight"], p["lin_device.bias"]
        )
        new_exit = stacked_linear(
            torch.cat([h_exit, to_exit], -1), p["lin_exit.weight"], p["lin_exit.bias"]
        )
        return torch.relu(new_dev), torch.relu(new_exit)


DENSE_FIELDS = (
    "x_device",
    "x_exit",
    "adj_device",
    "adj_exit",
    "edge_mean_device",
    "edge_mean_exit",
    "edge_attr_dense",
    "edge_mask",
)
#: the device axis of each of :data:`DENSE_FIELDS` in one slot's tensor (None: no device axis)
DENSE_DEVICE_AXES = (0, None, 0, 1, 0, None, 0, 0)


class GRLEActor(nn.Module):
    """The GRLE+ actor (module docstring): two typed message-passing layers with edge features
    and an edge classifier on [h_src ‖ h_dst ‖ e]."""

    def __init__(self, config: GRLEConfig = GRLEConfig()) -> None:
        super().__init__()
        self.config = config
        h1, h2 = config.hidden_channels
        self.conv1 = BipartiteConv(DEVICE_FEATURES, EXIT_FEATURES, EDGE_FEATURES, h1)
        self.conv2 = BipartiteConv(h1, h1, EDGE_FEATURES, h2)
        self.mlp1 = nn.Linear(2 * h2 + EDGE_FEATURES, config.classifier_channels)
        self.mlp2 = nn.Linear(config.classifier_channels, 1)
        # name -> Parameter, looked up once (named_parameters() costs ~30 µs a call); the
        # Parameter objects stay the same through load_state_dict and .to()
        self._own_params = dict(self.named_parameters())

    def forward(
        self, *graph: torch.Tensor | SparseGraph, params: Mapping[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """x̂ of either graph form (:mod:`offload.agents.graph`): (..., M, O) from the dense
        tensors of :data:`DENSE_FIELDS` with any leading axes, zero off the edges, or (E,) on
        the edges of one :class:`~offload.agents.graph.SparseGraph` (``edge_index`` order).

        ``params``: K runs' weights stacked on a leading axis (names as in ``state_dict``; dense
        form only); the inputs then lead with the same K axis and the K actors are evaluated in
        one pass (:class:`~offload.agents.learner.Learner`).
        """
        p = params if params is not None else self._own_params
        if isinstance(graph[0], SparseGraph):
            g = graph[0]
            h_dev, h_exit = self._layers(g.x_device, g.x_exit, g.aggregation(), p)
            return self._classify_edges(h_dev, h_exit, g.edge_attr, g.edge_index, p)
        x_dev, x_exit, adj_device, adj_exit, mean_dev, mean_exit, edge_attr, edge_mask = graph
        agg = Aggregation(adj_device.__matmul__, adj_exit.__matmul__, mean_dev, mean_exit)
        h_dev, h_exit = self._layers(x_dev, x_exit, agg, p)
        # the classifier for all M×O pairs at once: MLP₁ of a concatenation is the sum of MLP₁'s
        # column blocks applied to each part, so no per-edge gather is needed.
        h2 = h_dev.shape[-1]
        w, b = p["mlp1.weight"], p["mlp1.bias"]
        z = (
            stacked_linear(h_dev, w[..., :h2]).unsqueeze(-2)
            + stacked_linear(h_exit, w[..., h2 : 2 * h2]).unsqueeze(-3)
            + stacked_linear(edge_attr, w[..., 2 * h2 :], b)
        )
        z = stacked_linear(torch.relu(z), p["mlp2.weight"], p["mlp2.bias"])
        return torch.sigmoid(z).squeeze(-1) * edge_mask

    def _layers(self, x_dev, x_exit, agg: Aggregation, p: Mapping[str, torch.Tensor]):
        """The two message-passing layers, in either graph form."""
        h_dev, h_exit = self.conv1(x_dev, x_exit, agg, _sub(p, "conv1."))
        return self.conv2(h_dev, h_exit, agg, _sub(p, "conv2."))

    @staticmethod
    def _classify_edges(h_dev, h_exit, edge_attr, edge_index, p) -> torch.Tensor:
        """The edge classifier on the E edges of a sparse graph (one run's weights)."""
        dev, opt = edge_index
        h2 = h_dev.shape[-1]
        w, b = p["mlp1.weight"], p["mlp1.bias"]
        linear = nn.functional.linear
        # MLP₁ of [h_src ‖ h_dst ‖ e] as the sum of its column blocks, accumulated in place (one
        # (E, 64) buffer: the per-edge work dominates at M = 1,000)
        z = linear(edge_attr, w[:, 2 * h2 :], b)
        z += linear(h_dev, w[:, :h2])[dev]
        z += linear(h_exit, w[:, h2 : 2 * h2])[opt]
        z = linear(z.relu_(), p["mlp2.weight"], p["mlp2.bias"])
        return torch.sigmoid(z).squeeze(-1)
