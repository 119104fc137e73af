"""Vertex elimination on the structure of a linearized graph: the cost of an order.

Nodes are numbered 0..N-1: the `n_inputs` input vertices first, then one vertex per
operation in evaluation order. Orders name vertices by their 1-based position among the
non-input vertices (vertex 1 is the first operation), as the published orders do.

Eliminating vertex j connects every predecessor i to every successor k with the block
d v_k/d v_j @ d v_j/d v_i (added to an existing edge i -> k) and removes j. Output
vertices are never eliminated; when an output feeds another vertex, the Jacobian rows of
the later one still need its contribution, so after the order the outputs that have
successors are folded in evaluation order (counted like an elimination, the output's
own edges kept).
"""
from __future__ import annotations

from dataclasses import dataclass

from .structure import Structure, product, product_cost, union


@dataclass
class Topology:
    """The linearized graph as structure only: what the cost model needs."""
    n_inputs: int
    sizes: list                 # scalars per node
    edges: dict                 # (i, k) -> Structure
    outputs: list               # node ids of the outputs, in output order (may repeat)

    @property
    def n_vertices(self) -> int:
        return len(self.sizes) - self.n_inputs

    @property
    def is_scalar(self) -> bool:
        return all(s == 1 for s in self.sizes)

    def node(self, vertex: int) -> int:
        return self.n_inputs + vertex - 1

    def vertex(self, node: int) -> int:
        return node - self.n_inputs + 1

    def eliminable(self) -> list:
        """The vertices an order must contain: every non-output vertex."""
        outs = set(self.outputs)
        return [self.vertex(n) for n in range(self.n_inputs, len(self.sizes))
                if n not in outs]


class Elimination:
    """The graph while an order is applied, counting multiplications."""

    def __init__(self, topo: Topology, free_constants: bool = False):
        self.topo = topo
        self.free_constants = free_constants
        self.scalar = topo.is_scalar and not free_constants
        n = len(topo.sizes)
        self.preds = [set() for _ in range(n)]
        self.succs = [set() for _ in range(n)]
        for (i, k) in topo.edges:
            self.preds[k].add(i)
            self.succs[i].add(k)
        self.edges = None if self.scalar else dict(topo.edges)
        self.cost = 0

    def copy(self) -> "Elimination":
        new = Elimination.__new__(Elimination)
        new.topo, new.free_constants, new.scalar = self.topo, self.free_constants, self.scalar
        new.preds = [set(p) for p in self.preds]
        new.succs = [set(s) for s in self.succs]
        new.edges = None if self.edges is None else dict(self.edges)
        new.cost = self.cost
        return new

    def price(self, node: int) -> int:
        """Multiplications that eliminating `node` would cost now."""
        preds, succs = self.preds[node], self.succs[node]
        if self.scalar:
            return len(preds) * len(succs)
        e = self.edges
        return sum(product_cost(e[node, k], e[i, node], self.free_constants)
                   for i in preds for k in succs)

    def eliminate(self, node: int, keep: bool = False) -> int:
        """Eliminates `node` (with keep=True its own edges stay: folding an output)."""
        preds, succs = self.preds[node], self.succs[node]
        cost = self.price(node)
        e = self.edges
        for k in succs:
            if e is not None:
                after = e[node, k]
                for i in preds:
                    e[i, k] = union(e.get((i, k)), product(after, e[i, node]))
            self.preds[k].update(preds)
            if not keep:
                self.preds[k].discard(node)
        for i in preds:
            self.succs[i].update(succs)
            if not keep:
                self.succs[i].discard(node)
        if keep:
            for k in list(succs):
                self.preds[k].discard(node)
                if e is not None:
                    del e[node, k]
            self.succs[node] = set()
        else:
            if e is not None:
                for i in preds:
                    del e[i, node]
                for k in succs:
                    del e[node, k]
            self.preds[node], self.succs[node] = set(), set()
        self.cost += cost
        return cost

    def finish(self) -> int:
        """Folds the outputs that feed other vertices; returns the total cost."""
        for node in sorted(set(self.topo.outputs)):
            if self.succs[node]:
                self.eliminate(node, keep=True)
        return self.cost


def order_cost(topo: Topology, order, free_constants: bool = False) -> int:
    """Multiplications of eliminating `order` (1-based vertex numbers), outputs kept."""
    check_order(topo, order)
    state = Elimination(topo, free_constants)
    for v in order:
        state.eliminate(topo.node(v))
    return state.finish()


def check_order(topo: Topology, order) -> None:
    from ..core.errors import ChainruleError

    want = set(topo.eliminable())
    got = list(order)
    if len(got) != len(set(got)) or set(got) != want:
        missing = sorted(want - set(got))[:5]
        extra = sorted(set(got) - want)[:5]
        raise ChainruleError(
            f"an elimination order must name every non-output vertex (1..{topo.n_vertices}) "
            f"exactly once; missing {missing}, not eliminable or unknown {extra}, "
            f"{len(got) - len(set(got))} repeated. Outputs are never eliminated.")
