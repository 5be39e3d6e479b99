"""The device–option slot graph of the graph actors, in its two forms, and the neighbour means.

The slot graph has M device nodes and O = N·L option ("exit") nodes (o = n·L + l: exit l on
ES n), with an edge device m — option o wherever m reaches ES n this slot and the exit is
allowed (only the main branch l = L − 1 for GRL). Its edges are listed by :func:`edge_list`
(one slot or K stacked slots, sorted row-major by (k, m, o)): every per-edge feature of the
actors is written once on that list. The graph then takes one of two forms:

- **dense** (paper scale, training): (..., M, O) tensors with leading run / batch axes, the
  edge features scattered into the padded (..., M, O, F) layout, zero off the edges; the
  actors classify all M×O pairs at once and mask the result;
- **sparse** (:class:`SparseGraph`, city scale, one slot): ``edge_index`` (2, E) and the
  adjacency in CSR form; the actors classify the E edges only.

:class:`Aggregation` is how one forward takes neighbour means in either form.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch_geometric.utils import spmm


class EdgeList(NamedTuple):
    """The edges of one slot (``run`` empty) or of K stacked slots, sorted by (k, m, o);
    int64 arrays of E entries."""

    lead: tuple[np.ndarray, ...]  # (run k,) for K stacked slots, () for one slot
    device: np.ndarray  # m
    server: np.ndarray  # n
    exit: np.ndarray  # l
    option: np.ndarray  # o = n·L + l


def edge_list(state: Any, mask: np.ndarray | None = None, *, main_branch_only=False) -> EdgeList:
    """The allowed (device, option) pairs of ``state``: from the dense option ``mask``
    ((K, M, O), K stacked slots) or, without one, from ``state.link`` of one ``SlotState``
    (no M×O array built: the city-scale path)."""
    num_exits = np.asarray(state.exit_accuracy).shape[-1]
    if mask is not None:
        *lead, dev, opt = np.nonzero(mask)
        srv, ex = np.divmod(opt, num_exits)
        return EdgeList(tuple(lead), dev, srv, ex, opt)
    dev, srv = np.nonzero(np.asarray(state.link, dtype=bool))
    exits = np.array([num_exits - 1]) if main_branch_only else np.arange(num_exits)
    dev = np.repeat(dev, exits.size)
    srv = np.repeat(srv, exits.size)
    ex = np.tile(exits, dev.size // max(exits.size, 1))
    return EdgeList((), dev, srv, ex, srv * num_exits + ex)


def reachable_edges(state: Any, *, main_branch_only: bool = False) -> tuple[np.ndarray, ...]:
    """(device (E,), server (E,), exit (E,), option (E,)) int64 of every allowed (device,
    option) pair of a ``SlotState``: device m reaches ES n this slot (``state.link``) and the
    exit is allowed (only l = L − 1 with ``main_branch_only``); sorted by (m, o = n·L + l)."""
    return tuple(edge_list(state, main_branch_only=main_branch_only))[1:]


class Aggregation(NamedTuple):
    """How one forward takes neighbourhood means, in either graph form."""

    to_device: Callable[[torch.Tensor], torch.Tensor]  # option features -> mean at each device
    to_exit: Callable[[torch.Tensor], torch.Tensor]  # device features -> mean at each option
    edge_mean_device: torch.Tensor | None = None  # mean edge feature at each device (GRLE+)
    edge_mean_exit: torch.Tensor | None = None  # mean edge feature at each option (GRLE+)


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

    def aggregation(self) -> Aggregation:
        """Neighbour means as torch-geometric's sparse-dense product (``spmm``, mean), what
        ``SAGEConv`` does with an ``adj_t``."""
        return Aggregation(
            lambda h_exit: spmm(self.adj_device, h_exit, reduce="mean"),
            lambda h_dev: spmm(self.adj_exit, h_dev, reduce="mean"),
            self.edge_mean_device,
            self.edge_mean_exit,
        )


def f32(a: np.ndarray) -> torch.Tensor:
    """A float32 tensor of ``a``."""
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


def _segment_mean(values: np.ndarray, index: np.ndarray, size: int, count: np.ndarray):
    """(size, F) mean of the rows of ``values`` (E, F) grouped by ``index`` (0 where none)."""
    out = np.empty((size, values.shape[1]))
    for f in range(values.shape[1]):
        out[:, f] = np.bincount(index, weights=values[:, f], minlength=size)
    return out / np.maximum(count, 1.0)[:, None]


def sparse_graph(
    edges: EdgeList,
    x_device: np.ndarray,
    x_exit: np.ndarray,
    edge_attr: np.ndarray | None = None,
) -> SparseGraph:
    """The :class:`SparseGraph` of one slot's ``edges`` (:func:`edge_list` without a mask),
    node features (M, ·), (O, ·) and optional edge features (E, F), float64."""
    dev, opt = edges.device, edges.option
    num_devices, num_options = x_device.shape[0], x_exit.shape[0]
    by_option = np.argsort(opt, kind="stable")  # devices stay ascending within an option
    adjacency = (
        _csr(dev, opt, num_devices, num_options),
        _csr(opt[by_option], dev[by_option], num_options, num_devices),
    )
    means: tuple[torch.Tensor | None, ...] = (None, None)
    if edge_attr is not None:
        deg_dev = np.bincount(dev, minlength=num_devices).astype(np.float64)
        deg_exit = np.bincount(opt, minlength=num_options).astype(np.float64)
        means = (
            f32(_segment_mean(edge_attr, dev, num_devices, deg_dev)),
            f32(_segment_mean(edge_attr, opt, num_options, deg_exit)),
        )
    return SparseGraph(
        f32(x_device),
        f32(x_exit),
        torch.from_numpy(np.stack([dev, opt])),
        None if edge_attr is None else f32(edge_attr),
        *means,
        *adjacency,
        num_devices,
        num_options,
    )


def to_dense(values: torch.Tensor | np.ndarray, graph: SparseGraph) -> np.ndarray:
    """(M, O) float64 with the edge values in place and 0 off the edges (for a consumer that
    needs the dense x̂, e.g. :func:`~offload.agents.quantise.quantise` in the tests)."""
    out = np.zeros((graph.num_devices, graph.num_options))
    dev, opt = graph.edge_index.numpy()
    out[dev, opt] = np.asarray(values, dtype=np.float64)
    return out
