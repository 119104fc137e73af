"""A Jacobian plan: a function's linearized graph, an elimination order, its cost and
the generated code that runs it."""
from __future__ import annotations

import json
import time

import numpy as np

from ..core.errors import ChainruleError, ShapeError
from ..core.pytree import tree_flatten, tree_unflatten
from . import orders as _orders
from .codegen import generate
from .engine import check_order, order_cost
from .graph import linearized_graph

MODELS = {"published": False, "structured": True}


class Plan:
    """How to compute the Jacobian of `fun` at arguments of one signature.

    `order` is the list of eliminated vertices (1-based, evaluation order); `cost` its
    multiplications under `model`; `costs` those of forward, reverse and Markowitz for
    comparison; `source` the generated code that `jacobian` runs."""

    def __init__(self, lin, order, method, model, search_s=0.0):
        self.lin = lin
        self.model = model
        free = MODELS[model]
        topo = lin.topology
        check_order(topo, order)
        self.order = list(order)
        self.method = method
        self.search_s = search_s
        self.costs = {name: order_cost(topo, rule(topo, free), free)
                      for name, rule in _orders.ORDERS.items()}
        self.cost = order_cost(topo, self.order, free)
        self.source, namespace = generate(lin, self.order)
        exec(compile(self.source, f"<cross-country jacobian ({method})>", "exec"), namespace)
        self._fn = namespace["cross_country_jacobian"]
        self._avals = [v.aval for v in lin.graph.invars]
        self._scalar_program = all(v.aval.shape == () for v in lin.nodes) and all(
            v.aval.shape == () for e in lin.graph.eqns for v in e.outputs)

    @property
    def n_vertices(self) -> int:
        return self.lin.topology.n_vertices

    def report(self) -> str:
        """Multiplications of forward, reverse, Markowitz and this plan's order."""
        rows = [(name, c) for name, c in self.costs.items()]
        rows.append((f"this plan ({self.method})", self.cost))
        width = max(len(r[0]) for r in rows)
        lines = [f"cross-country elimination: {self.n_vertices} vertices, "
                 f"{len(self.order)} eliminated, cost model '{self.model}'"]
        lines += [f"  {name:<{width}}  {c:>10,d} multiplications" for name, c in rows]
        if self.search_s:
            lines.append(f"  search took {self.search_s:.2f} s")
        lines.append("  order: " + " ".join(map(str, self.order)))
        return "\n".join(lines)

    def __repr__(self):
        return f"<Plan {self.method}: {self.cost} multiplications, {self.n_vertices} vertices>"

    # ------------------------------------------------------------------ running
    def jacobian(self, *args):
        """The Jacobian at args: for each output a tuple (structured like the inputs)
        of blocks shaped out.shape + in.shape. Arguments may carry leading batch axes
        (the same on every input); the blocks then carry them too."""
        rows = [tree_unflatten(self.lin.in_tree, row) for row in self.blocks(*args)]
        return tree_unflatten(self.lin.out_tree, rows)

    def blocks(self, *args):
        """The Jacobian as a flat list (outputs) of lists (inputs) of blocks."""
        leaves, tree = tree_flatten(tuple(args))
        if tree != self.lin.in_tree:
            raise ShapeError(f"the plan was made for arguments structured as "
                             f"{self.lin.in_tree}, got {tree}")
        leaves = [np.asarray(x) for x in leaves]
        batch = None
        for x, aval in zip(leaves, self._avals):
            lead = np.ndim(x) - aval.ndim
            if lead < 0 or np.shape(x)[lead:] != aval.shape:
                raise ShapeError(f"the plan was made for an input of shape {aval.shape}; "
                                 f"got shape {np.shape(x)} (only leading batch axes may "
                                 f"be added). Make a new plan for other shapes.")
            b = np.shape(x)[:lead]
            if batch is not None and b != batch:
                raise ShapeError(f"all inputs must carry the same batch axes; got "
                                 f"{batch} and {b}")
            batch = b
        if batch and not self._scalar_program:
            return self._batched(leaves, batch)
        if batch and int(np.prod(batch)) > self.chunk:
            n = int(np.prod(batch))
            flat = [np.broadcast_to(x, batch).reshape(n) for x in leaves]
            return self._in_slices(self._fn, flat, batch, self.chunk)
        return self._fn(*leaves)

    #: A large batch runs in slices of this many elements, so that each of the hundreds
    #: of generated statements works on arrays that stay in cache: programs of scalars
    #: (`chunk`), and tensor programs (`tensor_chunk`), whose per-element partial blocks
    #: are larger (the transformer encoder at batch 8192: 4.1 s whole, 1.0 s in slices).
    chunk = 8192
    tensor_chunk = 2048

    @staticmethod
    def _in_slices(run, flat, batch, size):
        """run on slices of `size` elements of the flat batch axis, blocks joined and
        shaped batch + block shape."""
        n = flat[0].shape[0]
        parts = [run(*[x[s:s + size] for x in flat]) for s in range(0, n, size)]
        return [[np.concatenate([part[o][i] for part in parts]).reshape(
                    batch + np.shape(parts[0][o][i])[1:]) for i in range(len(flat))]
                for o in range(len(parts[0]))]

    def _batched(self, leaves, batch):
        """Tensor programs with a batch: the generated code vectorized by chainrule's
        vmap, slice by slice."""
        n = int(np.prod(batch))
        flat = [x.reshape((n,) + a.shape) for x, a in zip(leaves, self._avals)]
        return self._in_slices(self._vectorized, flat, batch, self.tensor_chunk)

    def _vectorized(self, *flat):
        """The generated code (plain NumPy, so it traces) under chainrule's vmap over the
        leading axis; one run per element when that fails or there is a single element
        (tracing would cost more than the run)."""
        from ..transforms.batching import vmap

        n = flat[0].shape[0]
        if n > 1:
            try:
                return [[np.asarray(b) for b in row] for row in vmap(self._fn)(*flat)]
            except ChainruleError:
                pass
        runs = [self._fn(*[x[b] for x in flat]) for b in range(n)]
        return [[np.stack([r[o][i] for r in runs]) for i in range(len(flat))]
                for o in range(len(runs[0]))]

    # ------------------------------------------------------------------ persistence
    def save(self, path, **meta):
        """Writes the order as a small JSON file (reload with `load_order`)."""
        record = {"order": self.order, "vertices": self.n_vertices, "model": self.model,
                  "cost": self.cost, "method": self.method,
                  "signature": [[list(a.shape), str(a.dtype)] for a in self._avals],
                  **meta}
        with open(path, "w") as fh:
            fh.write("{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}"
                                        for k, v in record.items()) + "\n}\n")


def load_order(path) -> dict:
    """The record written by `Plan.save`: at least "order", "vertices" and "cost"."""
    with open(path) as fh:
        record = json.load(fh)
    if not isinstance(record, dict) or not isinstance(record.get("order"), list):
        raise ChainruleError(f"{path} is not a saved elimination order (a JSON object with "
                             f"an 'order' list); write one with Plan.save")
    return record


def plan(fun, *args, order=None, search="auto", budget_s=5.0, seed=0, cse=False,
         model="published", progress=False) -> Plan:
    """Plans the Jacobian of fun at arguments shaped like args.

    order: "forward", "reverse", "markowitz", a list of vertices, or a record from
    `load_order`; when None, the order is searched with `search` ("greedy", "beam",
    "anneal", "exact" or "auto") within `budget_s` seconds from `seed`.
    model: "published" counts every product of nonzeros (the published counts);
    "structured" does not charge products with constant copy patterns or of constants.
    """
    if model not in MODELS:
        raise ChainruleError(f"unknown cost model {model!r}; choose 'published' or "
                             f"'structured'")
    lin = linearized_graph(fun, args, cse=cse)
    topo, free = lin.topology, MODELS[model]
    start = time.perf_counter()
    if isinstance(order, dict):
        record = order
        if record.get("vertices") != topo.n_vertices:
            raise ChainruleError(
                f"the saved order is for a graph of {record.get('vertices')} vertices, this "
                f"function has {topo.n_vertices}; it was saved for another function or "
                f"other options (cse)")
        order, method = record["order"], record.get("method", "loaded")
    elif isinstance(order, str):
        if order not in _orders.ORDERS and order not in _orders.SEARCHES:
            raise ChainruleError(
                f"unknown order {order!r}; choose one of "
                f"{', '.join(list(_orders.ORDERS) + list(_orders.SEARCHES))} or pass a "
                f"list of vertices")
        method = order
        order = _orders.ORDERS[order](topo, free) if order in _orders.ORDERS else \
            _orders.search(topo, order, budget_s, seed, free, progress)
    elif order is None:
        method = search
        order = _orders.search(topo, search, budget_s, seed, free, progress)
    else:
        method = "given"
    return Plan(lin, order, method, model, time.perf_counter() - start)

