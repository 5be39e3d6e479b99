"""The GRLE actors at city scale: the sparse slot graph (the device–option graph over the
reachable pairs only) of one slot, and the actors' x̂ on its edges.

The dense encoders (:func:`~offload.agents.grle.encode_slot_batch`,
:func:`~offload.agents.grle_paper.encode_paper_batch`) build (M, O) tensors, O = N·L options;
in a city (M = 1,000 devices, N = 50 ES, each device reaching k ≈ 5 of them) that is 250,000
(device, option) pairs of which only M·k·L ≈ 25,000 are edges. The sparse graph
(:class:`~offload.agents.graph.SparseGraph`) holds the edges alone, torch-geometric style:
``edge_index`` (2, E) = [device m, option o = n·L + l] over the linked (m, n) and the allowed
exits l, sorted by (m, o) (the row-major order of the dense mask), node features (M, ·) and
(O, ·) and, for GRLE+ and the edge MLP, edge features (E, 6). The features are the dense
encoder's own functions (each written once, on an edge list), so the values agree with the
dense tensors on every edge (sums over a device's or an option's edges may be added in another
order: float rounding).

Each actor's one forward takes this graph form as well as the dense one: neighbour means as
torch-geometric's sparse-dense product ``spmm(adj, h, reduce="mean")`` with the adjacency in CSR
form (what ``SAGEConv`` does with an ``adj_t``; 40× faster at M = 1,000 than gathering and
scattering E × 128 messages), the same layers, and the edge classifier of eq. (14) evaluated
per edge: x̂ comes back as an (E,) tensor in ``edge_index`` order. An actor trained on the
small dense graphs is therefore the same function on city graphs (tested: sparse = dense on
every edge to 1e-5). One slot at a time (no leading run axis): this is the decision path at
scale; training and the paper-size experiments keep the dense path of the committed results.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from offload.agents.edge_mlp import EdgeMLPActor
from offload.agents.graph import SparseGraph, reachable_edges, to_dense
from offload.agents.grle import GRLEActor, GRLEConfig, encode_plus_sparse
from offload.agents.grle_paper import GRLEPaperActor, GRLEPaperConfig, encode_paper_sparse

__all__ = ["SparseGraph", "encode_sparse", "reachable_edges", "sparse_relaxed", "to_dense"]


def encode_sparse(state: Any, config: GRLEConfig | GRLEPaperConfig) -> SparseGraph:
    """The sparse slot graph of one ``SlotState`` for an actor with ``config`` (GRLE+ and the
    edge MLP share :class:`~offload.agents.grle.GRLEConfig`'s features).

    Raises:
        TypeError: ``config`` is not a graph actor's (DROO's actors have a fixed-size input).
    """
    if isinstance(config, GRLEPaperConfig):
        return encode_paper_sparse(state, config)
    if isinstance(config, GRLEConfig):
        return encode_plus_sparse(state, config)
    raise TypeError(f"{type(config).__name__}: only the graph actors have a sparse path.")


@torch.no_grad()
def sparse_relaxed(actor: nn.Module, graph: SparseGraph) -> torch.Tensor:
    """x̂ (E,) on the edges of ``graph`` (``graph.edge_index`` order) with ``actor``'s weights.

    Raises:
        TypeError: not a graph actor (GRLE paper, GRLE+ or the edge MLP).
    """
    if not isinstance(actor, (GRLEPaperActor, GRLEActor, EdgeMLPActor)):
        raise TypeError(f"{type(actor).__name__}: only the graph actors have a sparse path.")
    return actor(graph)
