"""The GRLE actors on sparse slot graphs: the device–option graph over the reachable pairs only
(city scale).

The dense encoders (:func:`~offload.agents.grle.encode_slot_batch`,
:func:`~offload.agents.grle_paper.encode_paper_batch`) build (M, O) tensors, O = N·L options;
in a city (M = 1,000 devices, N = 50 ES, each device reaching k ≈ 5 of them) that is 250,000
(device, option) pairs of which only M·k·L ≈ 25,000 are edges. Here the graph is built over
the edges alone, torch-geometric style: ``edge_index`` (2, E) = [device m, option o = n·L + l]
over the linked (m, n) and the allowed exits l, sorted by (m, o) (the row-major order of the
dense mask), node features (M, ·) and (O, ·) and, for GRLE+ and the edge MLP, edge features
(E, 6). Every feature is computed with the dense encoder's formula on the edges, so the values
agree with the dense tensors on every edge (sums over a device's or an option's edges may be
added in another order: float rounding).

The forwards apply the *same* weights: neighbour means as torch-geometric's sparse-dense
product ``torch_geometric.utils.spmm(adj, h, reduce="mean")`` with the adjacency of
``edge_index`` in CSR form (the mean that ``MeanAggregation`` / ``SAGEConv`` take over the edge
index, 40× faster at M = 1,000 than gathering and scattering E × 128 messages), the layers'
weights applied to the nodes as in the dense forwards, and the edge classifier of eq. (14)
evaluated per edge: x̂ comes back as an (E,) tensor in ``edge_index`` order. An actor trained on
the small dense graphs is therefore the same function on city graphs (tested: sparse = dense on
every edge to 1e-5). One slot at a time (no leading run axis): this is the decision path at
scale; training and the paper-size experiments keep the dense path of the committed results.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch_geometric.utils import spmm

from offload.agents.edge_mlp import EdgeMLPActor
from offload.agents.grle import (
    DEVICE_FEATURES,
    EDGE_FEATURES,
    EXIT_FEATURES,
    GRLEActor,
    GRLEConfig,
    _Aggregation,
    _sub,
)
from offload.agents.grle_paper import GRLEPaperActor, GRLEPaperConfig, paper_node_features
from offload.sim.reward import psi

__all__ = ["SparseGraph", "encode_sparse", "reachable_edges", "sparse_relaxed", "to_dense"]


class SparseGraph(NamedTuple):
    """One slot's device–option graph over its edges (module docstring); float32 tensors."""

    x_device: torch.Tensor  # (M, F_dev) device node features
    x_exit: torch.Tensor  # (O, F_exit) option ("exit") node features
    edge_index: torch.Tensor  # (2, E) int64 [device m, option o], sorted by (m, o)
    edge_attr: torch.Tensor | None  # (E, 6) GRLE+'s edge features (None: the paper's actor)
    edge_mean_device: torch.Tensor | None  # (M, 6) mean edge feature at each device (GRLE+)
    edge_mean_exit: torch.Tensor | None  # (O, 6) mean edge feature at each option (GRLE+)
    adj_device: torch.Tensor  # (M, O) sparse CSR, 1 on the edges: neighbour means at devices
    adj_exit: torch.Tensor  # (O, M) sparse CSR, its transpose: neighbour means at options
    num_devices: int  # M
    num_options: int  # O = N·L


def reachable_edges(state: Any, *, main_branch_only: bool = False) -> tuple[np.ndarray, ...]:
    """(device (E,), server (E,), exit (E,), option (E,)) int64 of every allowed (device,
    option) pair of a ``SlotState``: device m reaches ES n this slot (``state.link``) and the
    exit is allowed (only l = L − 1 with ``main_branch_only``); sorted by (m, o = n·L + l)."""
    num_exits = state.num_exits
    dev, srv = np.nonzero(np.asarray(state.link, dtype=bool))
    exits = np.array([num_exits - 1]) if main_branch_only else np.arange(num_exits)
    dev = np.repeat(dev, exits.size)
    srv = np.repeat(srv, exits.size)
    ex = np.tile(exits, dev.size // max(exits.size, 1))
    return dev, srv, ex, srv * num_exits + ex


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _csr(row: np.ndarray, col: np.ndarray, rows: int, cols: int) -> torch.Tensor:
    """(rows, cols) sparse CSR with ones at (row, col); ``row`` ascending, ``col`` ascending
    within a row."""
    crow = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=rows), out=crow[1:])
    ones = torch.ones(row.size)
    with warnings.catch_warnings():  # "CSR support is in beta": a warning per process, not ours
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(crow),
            torch.from_numpy(col),
            ones,
            (rows, cols),
            check_invariants=False,  # built sorted here; checking costs a pass over E
        )


def _adjacency(dev: np.ndarray, opt: np.ndarray, num_devices: int, num_options: int):
    """(adj_device (M, O), adj_exit (O, M)) CSR of the edges (sorted by (m, o))."""
    by_option = np.argsort(opt, kind="stable")  # devices stay ascending within an option
    return (
        _csr(dev, opt, num_devices, num_options),
        _csr(opt[by_option], dev[by_option], num_options, num_devices),
    )


def _segment_mean(values: np.ndarray, index: np.ndarray, size: int, count: np.ndarray):
    """(size, F) mean of the rows of ``values`` (E, F) grouped by ``index`` (0 where none)."""
    out = np.empty((size, values.shape[1]))
    for f in range(values.shape[1]):
        out[:, f] = np.bincount(index, weights=values[:, f], minlength=size)
    return out / np.maximum(count, 1.0)[:, None]


def _encode_plus(state: Any, config: GRLEConfig) -> SparseGraph:
    """GRLE+'s features (:func:`~offload.agents.grle.encode_slot_batch`) on the edges."""
    dev, srv, ex, opt = reachable_edges(state, main_branch_only=config.main_branch_only)
    num_devices, num_exits = state.num_devices, state.num_exits
    num_options = state.num_servers * num_exits
    ts = config.time_scale_ms
    n_of_o, l_of_o = np.divmod(np.arange(num_options), num_exits)
    bits = np.asarray(state.task_bits, dtype=np.float64)
    deadline = np.asarray(state.deadline_ms, dtype=np.float64)
    dev_backlog = np.asarray(state.device_backlog_ms, dtype=np.float64)
    capacity = np.asarray(state.capacity, dtype=np.float64)
    exit_ms = np.asarray(state.exit_ms, dtype=np.float64)
    t_cmp = exit_ms / capacity[:, None]  # eq. (4)
    srv_backlog = np.asarray(state.server_backlog_ms, dtype=np.float64)
    acc = np.asarray(state.exit_accuracy, dtype=np.float64)
    deg_dev = np.bincount(dev, minlength=num_devices).astype(np.float64)
    deg_exit = np.bincount(opt, minlength=num_options).astype(np.float64)

    x_device = np.empty((num_devices, DEVICE_FEATURES))
    x_device[:, 0] = bits / 1e6
    x_device[:, 1] = deadline / ts
    x_device[:, 2] = dev_backlog / deadline
    x_device[:, 3] = deg_dev / max(num_options, 1)
    x_exit = np.empty((num_options, EXIT_FEATURES))
    x_exit[:, 0] = acc[l_of_o]
    x_exit[:, 1] = t_cmp[n_of_o, l_of_o] / ts
    x_exit[:, 2] = exit_ms[n_of_o, l_of_o] / ts
    x_exit[:, 3] = srv_backlog[n_of_o] / ts
    x_exit[:, 4] = capacity[n_of_o]
    x_exit[:, 5] = deg_exit / max(num_devices, 1)
    x_exit[:, 6] = num_devices / 10.0
    rate = np.asarray(state.rate_mbps, dtype=np.float64)[dev, srv]
    dl = deadline[dev]
    t_com = bits[dev] / (rate * 1e3)  # eq. (1)
    t_arr = dev_backlog[dev] + t_com  # eq. (6)
    t_done = np.maximum(t_arr, srv_backlog[srv]) + t_cmp[srv, ex]  # eq. (8), alone
    attr = np.empty((dev.size, EDGE_FEATURES))
    attr[:, 0] = rate / config.rate_scale_mbps
    attr[:, 1] = t_com / dl
    attr[:, 2] = np.minimum(t_arr / dl, 5.0)
    attr[:, 3] = np.minimum(t_done / dl, 5.0)
    attr[:, 4] = acc[ex] * psi(t_done, dl)  # eq. (9) for this task alone
    attr[:, 5] = t_done <= dl
    return SparseGraph(
        _t(x_device),
        _t(x_exit),
        torch.from_numpy(np.stack([dev, opt])),
        _t(attr),
        _t(_segment_mean(attr, dev, num_devices, deg_dev)),
        _t(_segment_mean(attr, opt, num_options, deg_exit)),
        *_adjacency(dev, opt, num_devices, num_options),
        num_devices,
        num_options,
    )


def _encode_paper(state: Any, config: GRLEPaperConfig) -> SparseGraph:
    """The paper actor's node features (:func:`~offload.agents.grle_paper.paper_node_features`)
    and the edge index."""
    dev, _, _, opt = reachable_edges(state, main_branch_only=config.main_branch_only)
    num_options = state.num_servers * state.num_exits
    shape_only = np.broadcast_to(False, (state.num_devices, num_options))  # no dense mask built
    x_device, x_exit = paper_node_features(state, shape_only, config)
    edge_index = torch.from_numpy(np.stack([dev, opt]))
    adjacency = _adjacency(dev, opt, state.num_devices, num_options)
    return SparseGraph(
        _t(x_device), _t(x_exit), edge_index, None, None, None, *adjacency, state.num_devices,
        num_options,
    )  # fmt: skip


def encode_sparse(state: Any, config: GRLEConfig | GRLEPaperConfig) -> SparseGraph:
    """The sparse slot graph of one ``SlotState`` for an actor with ``config`` (GRLE+ and the
    edge MLP share :class:`~offload.agents.grle.GRLEConfig`'s features).

    Raises:
        TypeError: ``config`` is not a graph actor's (DROO's actors have a fixed-size input).
    """
    if isinstance(config, GRLEPaperConfig):
        return _encode_paper(state, config)
    if isinstance(config, GRLEConfig):
        return _encode_plus(state, config)
    raise TypeError(f"{type(config).__name__}: only the graph actors have a sparse path.")


def _plus_forward(actor: GRLEActor, g: SparseGraph) -> torch.Tensor:
    """GRLE+ (:meth:`GRLEActor._dense`'s layers and classifier) on the edges."""
    dev, opt = g.edge_index

    def at_device(h_exit: torch.Tensor) -> torch.Tensor:
        return spmm(g.adj_device, h_exit, reduce="mean")

    def at_exit(h_dev: torch.Tensor) -> torch.Tensor:
        return spmm(g.adj_exit, h_dev, reduce="mean")

    agg = _Aggregation(at_device, at_exit, g.edge_mean_device, g.edge_mean_exit)
    p = actor._own_params
    h_dev, h_exit = actor.conv1(g.x_device, g.x_exit, agg, _sub(p, "conv1."))
    h_dev, h_exit = actor.conv2(h_dev, h_exit, agg, _sub(p, "conv2."))
    h2 = h_dev.shape[-1]
    w, b = p["mlp1.weight"], p["mlp1.bias"]
    linear = nn.functional.linear
    # MLP₁ of [h_src ‖ h_dst ‖ e] as the sum of its column blocks, accumulated in place (one
    # (E, 64) buffer: the per-edge work dominates at M = 1,000)
    z = linear(g.edge_attr, w[:, 2 * h2 :], b)
    z += linear(h_dev, w[:, :h2])[dev]
    z += linear(h_exit, w[:, h2 : 2 * h2])[opt]
    z = linear(z.relu_(), p["mlp2.weight"], p["mlp2.bias"])
    return torch.sigmoid(z).squeeze(-1)


def _paper_forward(actor: GRLEPaperActor, g: SparseGraph) -> torch.Tensor:
    """The paper's actor (eq. 12 as in :meth:`GRLEPaperActor.layer`: h_v' = ReLU(W_r h_v +
    W_l mean_{u ∈ N(v)} h_u + b), both node types; eqs. 13–14) on the edges."""
    p = dict(actor.named_parameters())
    h_dev, h_exit = g.x_device, g.x_exit
    for i in (1, 2):
        mean_at_exit = spmm(g.adj_exit, h_dev, reduce="mean")
        mean_at_dev = spmm(g.adj_device, h_exit, reduce="mean")
        new_exit = actor._stacked_sage(p, f"conv{i}_exit.", mean_at_exit, h_exit)
        new_dev = actor._stacked_sage(p, f"conv{i}_device.", mean_at_dev, h_dev)
        h_dev, h_exit = torch.relu(new_dev), torch.relu(new_exit)
    dev, opt = g.edge_index
    h2 = h_dev.shape[-1]
    w, b = p["mlp1.weight"], p["mlp1.bias"]
    linear = nn.functional.linear
    z = linear(h_dev, w[:, :h2])[dev]
    z += linear(h_exit, w[:, h2:], b)[opt]
    z = linear(z.relu_(), p["mlp2.weight"], p["mlp2.bias"])
    return torch.sigmoid(z).squeeze(-1)


def _mlp_forward(actor: EdgeMLPActor, g: SparseGraph) -> torch.Tensor:
    """The edge MLP on each edge's [x_device ‖ x_exit ‖ e]."""
    dev, opt = g.edge_index
    x = torch.cat([g.x_device[dev], g.x_exit[opt], g.edge_attr], dim=-1)
    p = dict(actor.named_parameters())
    linear = nn.functional.linear
    for i in (1, 2):
        x = torch.relu(linear(x, p[f"lin{i}.weight"], p[f"lin{i}.bias"]))
    return torch.sigmoid(linear(x, p["lin3.weight"], p["lin3.bias"])).squeeze(-1)


@torch.no_grad()
def sparse_relaxed(actor: nn.Module, graph: SparseGraph) -> torch.Tensor:
    """x̂ (E,) on the edges of ``graph`` (``graph.edge_index`` order) with ``actor``'s weights.

    Raises:
        TypeError: not a graph actor (GRLE paper, GRLE+ or the edge MLP).
    """
    if isinstance(actor, GRLEPaperActor):
        return _paper_forward(actor, graph)
    if isinstance(actor, GRLEActor):
        return _plus_forward(actor, graph)
    if isinstance(actor, EdgeMLPActor):
        return _mlp_forward(actor, graph)
    raise TypeError(f"{type(actor).__name__}: only the graph actors have a sparse path.")


def to_dense(values: torch.Tensor | np.ndarray, graph: SparseGraph) -> np.ndarray:
    """(M, O) float64 with the edge values in place and 0 off the edges (for a consumer that
    needs the dense x̂, e.g. :func:`~offload.agents.quantise.quantise` in the tests)."""
    out = np.zeros((graph.num_devices, graph.num_options))
    dev, opt = graph.edge_index.numpy()
    out[dev, opt] = np.asarray(values, dtype=np.float64)
    return out
