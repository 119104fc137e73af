"""From a traced chainrule Graph to the linearized graph that elimination works on.

One vertex per operation whose (floating-point) result depends on an input, in
evaluation order; operations on constants only are folded (they stay in the primal
code but are not vertices); no common-subexpression elimination unless asked for
(`cse=True` merges equations with the same primitive, inputs and parameters).

Each edge's local partial derivative is derived from the primitive's own JVP rule:
the rule is traced once with a symbolic tangent for that one input (zero tangents for
the others) and the resulting small linear graph decides the edge:

- a symbolic zero result: no edge (integer indices, comparisons, `floor`, ...);
- a result that does not use the point: a constant matrix, computed once now from basis
  tangents (add, subtract, reshape, broadcast, transpose, sums, indexing, x * 2.0);
- an elementwise primitive, or any primitive from a scalar to a scalar: the rule
  applied to a tangent of ones gives the diagonal (times the broadcast pattern when the
  input was broadcast);
- anything else (contractions, linear algebra, loops): a block computed by applying
  the rule to each basis tangent when the Jacobian is run. Its nonzero pattern, which
  the cost model charges, is found now by probing the rule at two random points
  (d(W @ x)/dW has one nonzero per entry of W, not a dense row of W's size per output);
  a zero of both random probes that is not structural has probability zero.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core.errors import NonDifferentiableError, UnsupportedOperationError
from ..core.ir import Graph, Literal, Var, aval_of
from ..core.primitive import Zero, jvp_rules
from ..core.pytree import tree_flatten, tree_unflatten
from ..core.trace import eval_graph, new_trace, trace_flat
from ..ops import elementwise
from . import structure as st
from .engine import Topology

#: Primitives that act elementwise (after broadcasting their operands).
ELEMENTWISE = set(elementwise.prims.values()) | {
    elementwise.select, elementwise.convert, elementwise.mul_zero_safe}

#: Largest block (rows x cols) that is computed by probing with basis tangents.
MAX_PROBED_BLOCK = 1 << 22


@dataclass
class Partial:
    """How to compute the block d out / d inputs[position] of one equation.

    kind: "constant" (matrix known now), "diagonal" (the rule on a tangent of ones gives
    the out-shaped diagonal; `broadcast` is the constant 0/1 matrix from the input to the
    output when the input was broadcast), or "dense" (the rule on every basis tangent).
    `rule_graph` is the traced rule: inputs (*eqn inputs, *eqn outputs, tangent)."""
    kind: str
    eqn: object
    position: int
    output: int
    rule_graph: object = None
    matrix: np.ndarray = None
    broadcast: np.ndarray = None
    pattern: np.ndarray = None


@dataclass
class LinearizedGraph:
    """The graph, its vertices (Vars) and the structure and recipe of every edge."""
    graph: object
    nodes: list                 # Var per node: inputs first, then one per operation
    topology: Topology
    partials: dict              # (i, k) -> list of Partial (an input used twice sums)
    in_tree: object
    out_tree: object
    out_atoms: list = field(default_factory=list)


def linearized_graph(fun, args, cse: bool = False) -> LinearizedGraph:
    """Traces fun(*args) with shapes only and builds its linearized graph."""
    leaves, in_tree = tree_flatten(tuple(args))
    avals = [aval_of(np.asarray(x) if not hasattr(x, "aval") else x) for x in leaves]
    for a in avals:
        if not a.is_float:
            raise NonDifferentiableError(
                f"cross-country elimination computes Jacobians with respect to "
                f"floating-point inputs; got an input of dtype {a.dtype}. Pass floats "
                f"(e.g. x.astype(float)) or close over the integer argument.")
    out_tree_box = []

    def flat_fun(*tracers):
        out = fun(*tree_unflatten(in_tree, list(tracers)))
        out_leaves, out_tree = tree_flatten(out)
        out_tree_box.append(out_tree)
        return out_leaves

    graph, _, _ = trace_flat(flat_fun, avals, abstract=True)
    if cse:
        graph = _merge_common_subexpressions(graph)
    return _build(graph, in_tree, out_tree_box[0])


def _merge_common_subexpressions(graph):
    seen, rename, eqns = {}, {}, []
    atom = lambda a: rename.get(a, a) if isinstance(a, Var) else a
    for e in graph.eqns:
        inputs = [atom(a) for a in e.inputs]
        key = (e.prim, tuple(id(a) if isinstance(a, Var) else ("lit", repr(a.value))
                             for a in inputs), repr(sorted(e.params.items())))
        if key in seen:
            rename.update(zip(e.outputs, seen[key].outputs))
            continue
        new = type(e)(e.prim, inputs, e.outputs, e.params, e.source)
        seen[key] = new
        eqns.append(new)
    return Graph(graph.constvars, graph.invars, eqns, [atom(a) for a in graph.outvars],
                 graph.consts)


def _build(graph, in_tree, out_tree) -> LinearizedGraph:
    known = _constant_values(graph)
    node_of = {v: n for n, v in enumerate(graph.invars)}
    nodes = list(graph.invars)
    sizes = [v.aval.size for v in graph.invars]
    edges, partials = {}, {}
    for e in graph.eqns:
        active = [p for p, a in enumerate(e.inputs) if isinstance(a, Var) and a in node_of]
        float_outs = [q for q, v in enumerate(e.outputs) if v.aval.is_float]
        if not active or not float_outs:
            continue
        if e.prim not in jvp_rules:
            raise NonDifferentiableError(
                f"primitive `{e.prim.name}` has no derivative rule and its result depends "
                f"on a differentiated input, so cross-country elimination cannot build "
                f"its local partial derivatives; wrap it with chainrule.stop_gradient if "
                f"its derivative is meant to be zero, or give it a rule "
                f"(chainrule.custom_jvp).")
        out_nodes = []
        for q in float_outs:
            node_of[e.outputs[q]] = len(nodes)
            out_nodes.append(len(nodes))
            nodes.append(e.outputs[q])
            sizes.append(e.outputs[q].aval.size)
        for p in active:
            for q, k in zip(float_outs, out_nodes):
                part = _partial(e, p, q, known)
                if part is None:
                    continue
                i = node_of[e.inputs[p]]
                s = _structure(part, e.inputs[p].aval.size, e.outputs[q].aval.size)
                edges[i, k] = st.union(edges.get((i, k)), s)
                partials.setdefault((i, k), []).append(part)
    out_atoms = list(graph.outvars)
    outputs = [node_of[a] for a in out_atoms if isinstance(a, Var) and a in node_of
               and node_of[a] >= len(graph.invars)]
    topo = Topology(len(graph.invars), sizes, edges, outputs)
    return LinearizedGraph(graph, nodes, topo, partials, in_tree, out_tree, out_atoms)


def _constant_values(graph) -> dict:
    """Values of the Vars that do not depend on the inputs (captured arrays and
    operations on them only), computed now: partials that use only these are
    constants of the plan."""
    known = dict(zip(graph.constvars, graph.consts))
    for e in graph.eqns:
        if all(isinstance(a, Literal) or a in known for a in e.inputs):
            with np.errstate(all="ignore"):
                out = e.prim.impl(*[a.value if isinstance(a, Literal) else known[a]
                                    for a in e.inputs], **e.params)
            known.update(zip(e.outputs, out if e.prim.multiple_results else [out]))
    return known


def _rule_graph(e, p, q, known):
    """The JVP rule of equation e traced with a symbolic tangent for input p only."""
    rule = jvp_rules[e.prim]
    with new_trace(abstract=True) as trace:
        prims = [a.value if isinstance(a, Literal) else trace.new_input(a.aval)
                 for a in e.inputs]
        outs = [trace.new_input(v.aval) for v in e.outputs]
        t = trace.new_input(e.inputs[p].aval)
        tangents = [t if r == p else Zero(a.aval) for r, a in enumerate(e.inputs)]
        with np.errstate(all="ignore"):
            result = rule(prims, tangents, outs, **e.params)[q]
        if isinstance(result, Zero):
            return None, False, None
        invars = [x._var for x in prims if hasattr(x, "_var")] + [o._var for o in outs] \
            + [t._var]
        g = trace.graph(invars, [result])
    sources = [a for a in e.inputs if isinstance(a, Var)] + list(e.outputs)
    values = [known.get(a) for a in sources]
    uses_point = _depends_on(g, {v for v, a in zip(g.invars, sources) if a not in known})
    return g, uses_point, values


def _depends_on(g, vars_) -> bool:
    live = set(vars_)
    for eqn in g.eqns:
        if any(isinstance(a, Var) and a in live for a in eqn.inputs):
            live.update(eqn.outputs)
    return any(isinstance(a, Var) and a in live for a in g.outvars) or bool(
        set(g.constvars) & live)


def _partial(e, p, q, known):
    g, uses_point, values = _rule_graph(e, p, q, known)
    if g is None:
        return None
    in_aval, out_aval = e.inputs[p].aval, e.outputs[q].aval
    if in_aval.size * out_aval.size > MAX_PROBED_BLOCK and (
            not uses_point or e.prim not in ELEMENTWISE):
        raise UnsupportedOperationError(
            f"the local Jacobian of `{e.prim.name}` ({out_aval} by {in_aval}) is too large "
            f"to form; cross-country elimination suits graphs of small blocks. Use "
            f"chainrule.jacfwd / jacrev for this function.")
    if not uses_point:
        return Partial("constant", e, p, q, g,
                       matrix=_probe_matrix(g, values, in_aval, out_aval))
    if e.prim in ELEMENTWISE or in_aval.shape == out_aval.shape == ():
        # a scalar-to-scalar partial is a 1 x 1 diagonal whatever the primitive (so a
        # batch axis on a program of scalars broadcasts through it too)
        bcast = None
        if in_aval.shape != out_aval.shape:
            bcast = _broadcast_matrix(in_aval.shape, out_aval.shape)
        return Partial("diagonal", e, p, q, g, broadcast=bcast)
    return Partial("dense", e, p, q, g, pattern=_probe_pattern(e, g, values, in_aval, out_aval))


def _probe_pattern(e, g, values, in_aval, out_aval):
    """The nonzero pattern of a point-dependent block: the union of the blocks at two
    random points (the known constants kept); dense when no such point can be made up
    (integer inputs) or the operation rejects it (a Cholesky factor of a matrix that is
    not positive definite)."""
    dense = np.ones((out_aval.size, in_aval.size), bool)
    n_in = len([a for a in e.inputs if isinstance(a, Var)])
    unknown = [v for v, x in zip(g.invars[:n_in], values[:n_in]) if x is None]
    if any(not v.aval.is_float for v in unknown):
        return dense
    pattern = np.zeros_like(dense)
    rng = np.random.default_rng(0)
    for _ in range(2):
        point = [rng.uniform(0.5, 1.5, v.aval.shape).astype(v.aval.dtype) if x is None else x
                 for v, x in zip(g.invars[:n_in], values[:n_in])]
        args = iter(point)
        full = [a.value if isinstance(a, Literal) else next(args) for a in e.inputs]
        try:
            with np.errstate(all="ignore"):
                outs = e.prim.impl(*full, **e.params)
                outs = outs if e.prim.multiple_results else [outs]
                block = _probe_matrix(g, point + [np.asarray(o) for o in outs], in_aval,
                                      out_aval)
        except Exception:            # any failure: assume no zeros
            return dense
        pattern |= block != 0
        if pattern.all():
            break
    return pattern


def _probe_matrix(g, values, in_aval, out_aval):
    """The constant matrix of a rule graph that ignores the point, column by column
    (`values`: the known constants among the rule's inputs, None for the others)."""
    dummies = [np.zeros(v.aval.shape, v.aval.dtype) if x is None else x
               for v, x in zip(g.invars[:-1], values)]
    cols = []
    for c in range(in_aval.size):
        basis = np.zeros(in_aval.size, in_aval.dtype)
        basis[c] = 1
        with np.errstate(all="ignore"):
            out = eval_graph(g, g.consts, dummies + [basis.reshape(in_aval.shape)])[0]
        cols.append(np.broadcast_to(np.asarray(out), out_aval.shape).reshape(-1))
    return np.stack(cols, axis=1) if cols else np.zeros((out_aval.size, 0))


def _broadcast_matrix(in_shape, out_shape):
    ids = np.arange(int(np.prod(in_shape, dtype=np.int64))).reshape(in_shape)
    src = np.broadcast_to(ids, out_shape).reshape(-1)
    m = np.zeros((src.size, ids.size))
    m[np.arange(src.size), src] = 1
    return m


def _structure(part: Partial, n_in: int, n_out: int) -> st.Structure:
    if part.kind == "constant":
        return st.from_matrix(part.matrix, constant=True)
    if part.kind == "diagonal":
        if part.broadcast is None:
            return st.diagonal(n_out)
        s = st.from_matrix(part.broadcast, constant=False)
        return st.Structure(s.kind, s.rows, s.cols, s.pattern) if s.kind != "diagonal" \
            else st.diagonal(n_out)
    return st.from_matrix(part.pattern, constant=False)
