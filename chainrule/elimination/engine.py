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

from .structure import product, product_cost, union


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


def _bits(mask):
    """The node ids in a bit mask, lowest first."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


class Elimination:
    """The graph while an order is applied, counting multiplications. Neighbour sets
    are bit masks (cheap to copy, so searches can branch); blocks are tracked only when
    the cost depends on them (vertices of more than one scalar, or free constants)."""

    def __init__(self, topo: Topology, free_constants: bool = False):
        self.topo = topo
        self.free_constants = free_constants
        self.scalar = topo.is_scalar and not free_constants
        n = len(topo.sizes)
        self.preds = [0] * n
        self.succs = [0] * n
        for (i, k) in topo.edges:
            self.preds[k] |= 1 << i
            self.succs[i] |= 1 << k
        self.edges = None if self.scalar else dict(topo.edges)
        self.cost = 0

    def copy(self) -> "Elimination":
        new = Elimination.__new__(Elimination)
        new.topo, new.free_constants, new.scalar = self.topo, self.free_constants, self.scalar
        new.preds, new.succs = list(self.preds), list(self.succs)
        new.edges = None if self.edges is None else dict(self.edges)
        new.cost = self.cost
        return new

    def price(self, node: int) -> int:
        """Multiplications that eliminating `node` would cost now."""
        if self.scalar:
            return self.preds[node].bit_count() * self.succs[node].bit_count()
        e = self.edges
        return sum(product_cost(e[node, k], e[i, node], self.free_constants)
                   for i in _bits(self.preds[node]) for k in _bits(self.succs[node]))

    def eliminate(self, node: int, keep: bool = False) -> int:
        """Eliminates `node` (with keep=True its own edges stay: folding an output)."""
        cost = self.price(node)
        pmask, smask, bit = self.preds[node], self.succs[node], 1 << node
        e = self.edges
        if e is None and not keep:
            self._eliminate_scalar(node, pmask, smask, ~bit)
            self.cost += cost
            return cost
        for k in _bits(smask):
            if e is not None:
                after = e.pop((node, k))
                for i in _bits(pmask):
                    e[i, k] = union(e.get((i, k)), product(after, e[i, node]))
            self.preds[k] = (self.preds[k] | pmask) & ~bit
        self.succs[node] = 0
        if not keep:
            for i in _bits(pmask):
                self.succs[i] = (self.succs[i] | smask) & ~bit
                if e is not None:
                    del e[i, node]
            self.preds[node] = 0
        else:
            for i in _bits(pmask):
                self.succs[i] |= smask
        self.cost += cost
        return cost

    def _eliminate_scalar(self, node, pmask, smask, keep_mask):
        """The same update without blocks, written out: the inner loop of searches."""
        preds, succs = self.preds, self.succs
        m = smask
        while m:
            low = m & -m
            k = low.bit_length() - 1
            m ^= low
            preds[k] = (preds[k] | pmask) & keep_mask
        m = pmask
        while m:
            low = m & -m
            i = low.bit_length() - 1
            m ^= low
            succs[i] = (succs[i] | smask) & keep_mask
        preds[node] = succs[node] = 0

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
