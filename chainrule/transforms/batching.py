"""Vectorization (`vmap`): a graph interpreter that carries a batch axis.

`vmap(f)` traces f once on the avals of one example (shapes without the batch axis),
then walks the graph with batched values: every value is an array (or a tracer of an
enclosing transformation) together with the position of its batch axis, or None when
it does not vary over the batch. Each primitive's batch rule

    batch(args, dims, **params) -> (out, out_dim)        (lists for multiple results)

maps batched inputs to batched outputs with ordinary primitive calls, so `vmap`
composes with every other transformation (`grad(vmap(f))`, `vmap(grad(f))`, `jacobian`
built on `vmap`, nested `vmap`). Equations whose inputs are all unbatched run as they
are; a primitive without a batch rule runs once per example (slow, but correct).

The op modules write their rules with the helpers of `core/batch_axes.py`
(`broadcasting_rule`, `axis_param_rule`, `move_batch_axis`, ...).
"""
from __future__ import annotations

import functools

import numpy as np

from ..core.errors import ConcretizationError, ShapeError
from ..core.ir import Aval, Graph, Literal, Var, aval_of
from ..core.batch_axes import move_batch_axis
from ..core.primitive import DiagonalBatch, batch_rules
from ..core.pytree import _node, tree_flatten, tree_unflatten
from ..core.trace import trace_flat


def loop_rule(prim, args, dims, size, params):
    """For primitives without a batch rule: one call per example, results stacked."""
    per_example = []
    for i in range(size):
        example = [a if d is None else a[(slice(None),) * d + (i,)]
                   for a, d in zip(args, dims)]
        out = prim.bind(*example, **params)
        per_example.append(out if prim.multiple_results else [out])
    if size == 0:
        example_avals = [aval_of(a) if d is None else
                         Aval(np.shape(a)[:d] + np.shape(a)[d + 1:], aval_of(a).dtype)
                         for a, d in zip(args, dims)]
        outs = [np.zeros((0,) + av.shape, av.dtype)
                for av in prim.shape(*example_avals, **params)]
    else:
        outs = [np.stack([r[k] for r in per_example]) for k in range(len(per_example[0]))]
    return (outs, [0] * len(outs)) if prim.multiple_results else (outs[0], 0)


# --------------------------------------------------------------------------- the interpreter

def apply_batched(prim, vals, dims, size, params):
    """(outs, out_dims) of prim on batched values: its batch rule, a plain bind when
    nothing is batched, or one call per example when it has no rule."""
    if all(d is None for d in dims):
        out = prim.bind(*vals, **params)
        return out, [None] * len(out) if prim.multiple_results else None
    rule = batch_rules.get(prim)
    if rule is None:
        return loop_rule(prim, vals, dims, size, params)
    return rule(vals, dims, **dict(params))


def batch_eval(graph: Graph, consts, args, dims, size, apply=apply_batched):
    """Runs `graph` on batched `args` (batch axes `dims`, None = unbatched); consts are
    unbatched. `apply` runs one equation (another one may know structured batches).
    Returns (outs, out_dims)."""
    env = {v: (c, None) for v, c in zip(graph.constvars, consts)}
    env.update(zip(graph.invars, zip(args, dims)))
    read = lambda a: (a.value, None) if isinstance(a, Literal) else env[a]
    for e in graph.eqns:
        vals, in_dims = zip(*[read(a) for a in e.inputs]) if e.inputs else ((), ())
        out, out_dims = apply(e.prim, list(vals), list(in_dims), size, e.params)
        if e.prim.multiple_results:
            env.update(zip(e.outputs, zip(out, out_dims)))
        else:
            env[e.outputs[0]] = (out, out_dims)
    results = [read(a) for a in graph.outvars]
    return [r[0] for r in results], [r[1] for r in results]


def batched_aval(aval: Aval, dim, size) -> Aval:
    if dim is None:
        return aval
    shape = list(aval.shape)
    shape.insert(dim, size)
    return Aval(shape, aval.dtype)


def batch_graph(graph: Graph, dims, size, out_dims=None):
    """A graph (no constvars) computing `graph` on batched inputs; its outputs have the
    batch axis first, or at `out_dims[i]` when given (None there: left unbatched if it
    is, which the caller must allow). Returns (graph, out_dims)."""
    found = []

    def run(*args):
        outs, got = batch_eval(graph, graph.consts, args, dims, size)
        wanted = [0] * len(outs) if out_dims is None else out_dims
        found[:] = [None if w is None and g is None else (0 if w is None else w)
                    for w, g in zip(wanted, got)]
        return [o if f is None else move_batch_axis(o, g, f, size)
                for o, g, f in zip(outs, got, found)]

    avals = [batched_aval(v.aval, d, size) for v, d in zip(graph.invars, dims)]
    g, _, _ = trace_flat(run, avals, abstract=True)
    return inline_consts(g), found


def closed(graph: Graph) -> Graph:
    """The graph with its constants as leading inputs (so it can sit in a param)."""
    if not graph.constvars:
        return graph
    return Graph([], list(graph.constvars) + list(graph.invars), graph.eqns,
                 graph.outvars, [])


def inline_consts(graph: Graph) -> Graph:
    """The graph with its constants (arrays made while tracing it, such as a batch
    rule's broadcast of a literal) written into it as Literals: a graph without
    constvars, for a param."""
    if not graph.constvars:
        return graph
    env = {v: Literal(c) for v, c in zip(graph.constvars, graph.consts)}
    sub = lambda a: env.get(a, a) if isinstance(a, Var) else a
    eqns = [type(e)(e.prim, [sub(a) for a in e.inputs], e.outputs, e.params, e.source)
            for e in graph.eqns]
    return Graph([], graph.invars, eqns, [sub(a) for a in graph.outvars], [])


# --------------------------------------------------------------------------- vmap

def _prefix_leaves(prefix, tree, what):
    """One entry of `prefix` per leaf of `tree`: ints/None apply to whole subtrees."""
    if prefix is None or isinstance(prefix, (int, np.integer)):
        return [prefix] * len(tree_flatten(tree)[0])
    p_kind, p_rules = _node(prefix)
    t_kind, t_rules = _node(tree)
    if p_kind is None or p_kind is not t_kind:
        raise ShapeError(f"vmap: {what} {prefix!r} does not match the structure of the "
                         f"value it describes ({type(tree).__name__}); give an int, None, "
                         f"or a container of the same kind")
    (p_children, p_aux), (t_children, t_aux) = p_rules[0](prefix), t_rules[0](tree)
    if p_aux != t_aux or len(p_children) != len(t_children):
        raise ShapeError(f"vmap: {what} {prefix!r} does not match the structure of the "
                         f"value it describes")
    return [d for p, t in zip(p_children, t_children) for d in _prefix_leaves(p, t, what)]


def _normalize(axis, ndim, what):
    if axis is None:
        return None
    if not -ndim <= axis < max(ndim, 0) or ndim == 0:
        raise ShapeError(f"vmap: {what} {axis} is out of range for an array of "
                         f"dimension {ndim - (what == 'out_axes')}")
    return axis % ndim


def vmap(fun, in_axes=0, out_axes=0):
    """Vectorizes fun over a batch axis of its arguments.

    in_axes: an int (the batch axis of every argument), None (not batched), or a
    tuple/list with one entry per positional argument, each an int, None or a pytree
    prefix of that argument. out_axes: likewise for the output (None: the output must
    not depend on the batch). Negative axes count from the end."""
    @functools.wraps(fun)
    def batched(*args):
        if isinstance(in_axes, (tuple, list)):
            if len(in_axes) != len(args):
                raise ShapeError(f"vmap: in_axes has {len(in_axes)} entries for "
                                 f"{len(args)} positional argument(s)")
            axes = [d for p, a in zip(in_axes, args) for d in _prefix_leaves(p, a, "in_axes")]
        else:
            axes = _prefix_leaves(in_axes, args, "in_axes")
        leaves, in_tree = tree_flatten(args)
        leaves = [x if hasattr(x, "shape") and hasattr(x, "dtype") else np.asarray(x)
                  for x in leaves]
        axes = [_normalize(d, np.ndim(x), "in_axes") for d, x in zip(axes, leaves)]
        sizes = {np.shape(x)[d] for x, d in zip(leaves, axes) if d is not None}
        if not sizes:
            raise ShapeError("vmap needs at least one batched argument: every in_axes "
                             "entry is None")
        if len(sizes) > 1:
            raise ShapeError(f"vmap: the batched axes have different sizes {sorted(sizes)}; "
                             f"all batched arguments need the same batch size")
        size = sizes.pop()
        out_tree = []

        def flat_fun(*tracers):
            out = fun(*tree_unflatten(in_tree, tracers))
            out_leaves, treedef = tree_flatten(out)
            out_tree.append((out, treedef))
            return out_leaves

        example = [Aval(np.shape(x)[:d] + np.shape(x)[d + 1:] if d is not None
                        else np.shape(x), x.dtype) for x, d in zip(leaves, axes)]
        try:
            graph, _, _ = trace_flat(flat_fun, example, abstract=True)
        except ConcretizationError as e:
            raise ConcretizationError(
                f"vmap traces the function once for all examples, with shapes only, so "
                f"Python control flow cannot depend on array values. Use np.where, "
                f"chainrule.cond, chainrule.while_loop or chainrule.fori_loop instead. "
                f"({e})") from None
        outs, dims = batch_eval(graph, graph.consts, leaves, axes, size)
        out_example, treedef = out_tree[-1]
        wanted = _prefix_leaves(out_axes, out_example, "out_axes")
        result = []
        for o, d, w in zip(outs, dims, wanted):
            if w is None:
                if d is not None:
                    raise ShapeError("vmap: out_axes is None for an output that varies "
                                     "over the batch")
                result.append(o)
                continue
            w = _normalize(w, np.ndim(o) + (d is None), "out_axes")
            result.append(_writeable(move_batch_axis(o, d, w, size)))
        return tree_unflatten(treedef, result)
    return batched


def vmap_graph_eval(graph: Graph, consts, args, dims, size, apply=apply_batched):
    """eval_graph's batched twin, with every output's batch axis first (and dense)."""
    outs, got = batch_eval(graph, consts, args, dims, size, apply)
    outs = [o.dense() if type(o) is DiagonalBatch else o for o in outs]
    return [_writeable(move_batch_axis(o, d, 0, size)) for o, d in zip(outs, got)]


def _writeable(x):
    """A plain array the caller may write into (not a broadcast view)."""
    return x.copy() if isinstance(x, np.ndarray) and not x.flags.writeable else x
