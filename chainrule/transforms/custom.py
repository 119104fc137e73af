"""User-defined derivative rules: custom_jvp and custom_vjp.

    @custom_jvp                              @custom_vjp
    def f(x): ...                            def f(x): ...
    @f.defjvp                                def f_fwd(x): return f(x), residuals
    def f_jvp(primals, tangents):            def f_bwd(residuals, ct): return (ct_x,)
        return out, out_tangent              f.defvjp(f_fwd, f_bwd)

Both work in forward and reverse mode and at higher order, because each becomes a
primitive whose JVP rule calls the user's rule on traceable values:

- custom_jvp: reverse mode linearizes the user's JVP rule (it must be linear in the
  tangents, as any JVP is) and transposes it.
- custom_vjp: the JVP of f is the *transpose of bwd*: bwd is traced as a linear function
  of the cotangent, and transposing that linear graph gives tangent -> J tangent. So
  forward mode works (JAX's custom_vjp cannot do this) whenever bwd is written with
  NumPy operations chainrule can trace. Reverse mode calls bwd itself, with arrays, so a
  bwd that calls non-traceable code (SciPy, a C library) still works for gradients;
  such a bwd raises a clear error in forward mode.

Under vmap each becomes the same primitive on a batched custom function: the user's
function and rules, vmapped (the batch axis first), so derivatives of the batched
function still use the user's rules.
"""
from __future__ import annotations

import functools

import numpy as np

from ..core.batch_axes import batch_size
from ..core.errors import ChainruleError
from ..core.ir import aval_of
from ..core.primitive import Zero, primitive
from ..core.pytree import tree_flatten, tree_unflatten
from ..core.trace import Tracer, trace_flat
from .batching import vmap
from .jvp import instantiate, jvp_graph
from .transpose import backward_pass


def _leaf(x):
    return x if isinstance(x, (Tracer, np.ndarray)) else np.asarray(x)


def _has_tracer(leaves):
    return any(isinstance(x, Tracer) for x in leaves)


class _Call:
    """Static data of one call site: the rule object and the input structure; caches
    output structure and avals per input avals."""

    def __init__(self, rule, in_tree):
        self.rule = rule
        self.in_tree = in_tree
        self.out_tree = None
        self._avals: dict = {}

    def __repr__(self):
        return self.rule.__name__

    def run(self, leaves):
        out_leaves, self.out_tree = tree_flatten(
            self.rule.fun(*tree_unflatten(self.in_tree, leaves)))
        return [_leaf(o) for o in out_leaves]

    def out_avals(self, in_avals):
        key = tuple(in_avals)
        if key not in self._avals:
            _, _, outs = trace_flat(lambda *xs: self.run(list(xs)), in_avals, abstract=True)
            self._avals[key] = [aval_of(o) for o in outs]
        return self._avals[key]


def _bind(prim, rule, args):
    leaves, in_tree = tree_flatten(args)
    leaves = [_leaf(x) for x in leaves]
    call = _Call(rule, in_tree)
    if not _has_tracer(leaves):
        return rule.fun(*args)
    outs = prim.bind(*leaves, call=call)
    return tree_unflatten(call.out_tree, outs)


def _instantiated(tangents, primals):
    return [np.zeros(np.shape(p), aval_of(p).dtype) if isinstance(t, Zero) else t
            for t, p in zip(tangents, primals)]


# --------------------------------------------------------------------------- custom_jvp

def _custom_jvp_rule(primals, tangents, outs, call):
    args = tree_unflatten(call.in_tree, primals)
    targs = tree_unflatten(call.in_tree, _instantiated(tangents, primals))
    if call.rule.jvp is None:
        raise ChainruleError(f"custom_jvp function {call.rule.__name__} has no rule: "
                             f"define one with @{call.rule.__name__}.defjvp")
    _, out_t = call.rule.jvp(args, targs)
    return [_leaf(t) for t in tree_flatten(out_t)[0]]


def _call_primitive(name, jvp, batch):
    """A primitive that runs the user's function of its `call` parameter."""
    return primitive(name, lambda *xs, call: tuple(call.run(list(xs))),
                     lambda *avals, call: call.out_avals(avals), multiple_results=True,
                     jvp=jvp, batch=batch)


def _batched_call(prim, make, args, dims, call):
    """The batch rule of a custom call: `make(example, dims)` gives the custom function
    over the batch (flat arguments with batch axes `dims`, outputs batched first) from
    `example`, a _Call of the user's rule that reads one example's flat leaves."""
    example = _Call(call.rule, call.in_tree)
    rule = make(example, tuple(dims))
    outs = prim.bind(*args, call=_Call(rule, tree_flatten(tuple(args))[1]))
    return outs, [0] * len(outs)


def _flat_vmap(rule, fun, dims):
    """vmap of fun (flat leaves -> flat leaves) named after the user's rule."""
    fun.__name__ = fun.__qualname__ = rule.__name__
    return vmap(fun, in_axes=dims)


def _batched_custom_jvp(example, dims):
    rule = example.rule
    batched = custom_jvp(_flat_vmap(rule, lambda *xs: example.run(list(xs)), dims))
    if rule.jvp is not None:
        def jvp_leaves(*xs):
            n = len(xs) // 2
            out, out_t = rule.jvp(tree_unflatten(example.in_tree, xs[:n]),
                                  tree_unflatten(example.in_tree, xs[n:]))
            return [[_leaf(o) for o in tree_flatten(tree)[0]] for tree in (out, out_t)]
        both = _flat_vmap(rule, jvp_leaves, dims + dims)
        batched.defjvp(lambda primals, tangents: both(*primals, *tangents))
    return batched


custom_jvp_call_p = _call_primitive(
    "custom_jvp_call", _custom_jvp_rule,
    lambda args, dims, call: _batched_call(custom_jvp_call_p, _batched_custom_jvp, args,
                                           dims, call))


class custom_jvp:
    """A function with a user-given JVP rule (see the module docstring)."""

    def __init__(self, fun):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.jvp = None

    def defjvp(self, jvp):
        """jvp(primals, tangents) -> (output, output_tangent); primals and tangents are
        tuples shaped like the arguments."""
        self.jvp = jvp
        return jvp

    def __call__(self, *args):
        return _bind(custom_jvp_call_p, self, args)


# --------------------------------------------------------------------------- custom_vjp

def _bwd_leaves(call, res_leaves, ct_leaves):
    """The user's bwd on flat residuals and output cotangents -> flat input cotangents."""
    res = tree_unflatten(call.res_tree, res_leaves)
    cts = call.rule.bwd(res, tree_unflatten(call.out_tree, ct_leaves))
    if not isinstance(cts, tuple):
        raise ChainruleError(f"the bwd rule of {call.rule.__name__} must return a tuple "
                             f"with one cotangent per argument, got {type(cts).__name__}")
    ct_leaves_in, tree = tree_flatten(cts)
    if tree != call.in_tree:
        raise ChainruleError(f"the bwd rule of {call.rule.__name__} returned cotangents "
                             f"structured as {tree}, the arguments are {call.in_tree}")
    return [_leaf(c) for c in ct_leaves_in]


def _forward_from_bwd(call, res_leaves, tangents):
    """J t as the transpose of ct -> bwd(res, ct), traced as a linear function."""
    out_avals = [aval_of(o) for o in call.outs_example]
    try:
        graph, _, _ = trace_flat(lambda *ct: _bwd_leaves(call, res_leaves, list(ct)),
                                 out_avals, abstract=True)
    except ChainruleError as e:
        raise ChainruleError(
            f"forward mode through custom_vjp function {call.rule.__name__} transposes "
            f"its bwd rule, which must then be written with NumPy operations chainrule "
            f"can trace; tracing it failed: {e}") from e
    return [instantiate(c) for c in backward_pass(graph, tangents)]


def _custom_vjp_lin_jvp(primals, tangents, outs, call, n_res):
    """Derivative of (res, t) -> J(res) t: linear in t, and through res by tracing."""
    graph, trace, _ = trace_flat(
        lambda *xs: _forward_from_bwd(call, list(xs[:n_res]), list(xs[n_res:])), primals)
    return jvp_graph(graph, trace.values, tangents)


def _custom_vjp_lin_transpose(cts, *args, call, n_res):
    res = list(args[:n_res])
    cts_in = _bwd_leaves(call, res, [instantiate(c) for c in cts])
    return [None] * n_res + cts_in


def _custom_vjp_lin_batch(args, dims, call, n_res):
    """J(res) t per example: the transposed bwd, vmapped (ordinary operations, whose
    transpose is bwd's graph again)."""
    outs = vmap(lambda *xs: _forward_from_bwd(call, list(xs[:n_res]), list(xs[n_res:])),
                in_axes=tuple(dims))(*args)
    return outs, [0] * len(outs)


custom_vjp_lin_p = primitive(
    "custom_vjp_lin",
    lambda *xs, call, n_res: tuple(_forward_from_bwd(call, list(xs[:n_res]), list(xs[n_res:]))),
    lambda *avals, call, n_res: [aval_of(o) for o in call.outs_example],
    multiple_results=True, jvp=_custom_vjp_lin_jvp, transpose=_custom_vjp_lin_transpose,
    batch=_custom_vjp_lin_batch)


def _custom_vjp_rule(primals, tangents, outs, call):
    if call.rule.fwd is None:
        raise ChainruleError(f"custom_vjp function {call.rule.__name__} has no rule: "
                             f"define one with {call.rule.__name__}.defvjp(fwd, bwd)")
    out, res = call.rule.fwd(*tree_unflatten(call.in_tree, primals))
    res_leaves, call.res_tree = tree_flatten(res)
    call.outs_example = outs
    res_leaves = [_leaf(r) for r in res_leaves]
    return custom_vjp_lin_p.bind(*res_leaves, *_instantiated(tangents, primals),
                                 call=call, n_res=len(res_leaves))


def _batched_custom_vjp(example, dims):
    """bwd over the batch sums the cotangents of unbatched arguments over the batch
    (every example used them) and puts the others' batch axes back where they were."""
    rule = example.rule
    batched = custom_vjp(_flat_vmap(rule, lambda *xs: example.run(list(xs)), dims))
    if rule.fwd is None:
        return batched

    def fwd_leaves(*xs):
        out, res = rule.fwd(*tree_unflatten(example.in_tree, xs))
        out_leaves, example.out_tree = tree_flatten(out)
        res_leaves, example.res_tree = tree_flatten(res)
        return [_leaf(o) for o in out_leaves], [_leaf(r) for r in res_leaves]

    def bwd(res, cts):
        per_example = _vmapped_or_looped(
            lambda *xs: _bwd_leaves(example, list(xs[:len(res)]), list(xs[len(res):])),
            list(res) + list(cts), (0,) * (len(res) + len(cts)))
        return tuple(np.sum(c, axis=0) if d is None else np.moveaxis(c, 0, d)
                     for c, d in zip(per_example, dims))
    batched.defvjp(lambda *xs: _vmapped_or_looped(fwd_leaves, xs, dims), bwd)
    return batched


def _vmapped_or_looped(fun, leaves, dims):
    """vmap(fun, in_axes=dims)(*leaves). Reverse mode calls fwd and bwd on arrays, where
    they may call code chainrule cannot trace (SciPy, a C library): then fun runs once
    per example and the results are stacked (any other error shows again there)."""
    try:
        return vmap(fun, in_axes=dims)(*leaves)
    except ChainruleError:
        size = batch_size(leaves, dims)
        if _has_tracer(leaves) or not size:
            raise
        results = [tree_flatten(fun(*[x if d is None else np.take(x, i, axis=d)
                                      for x, d in zip(leaves, dims)])) for i in range(size)]
        return tree_unflatten(results[0][1], [np.stack(xs) for xs in
                                              zip(*[flat for flat, _ in results])])


custom_vjp_call_p = _call_primitive(
    "custom_vjp_call", _custom_vjp_rule,
    lambda args, dims, call: _batched_call(custom_vjp_call_p, _batched_custom_vjp, args,
                                           dims, call))


class custom_vjp:
    """A function with a user-given VJP rule (see the module docstring)."""

    def __init__(self, fun):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.fwd = self.bwd = None

    def defvjp(self, fwd, bwd):
        """fwd(*args) -> (output, residuals); bwd(residuals, output_cotangent) -> a tuple
        with one cotangent per argument."""
        self.fwd, self.bwd = fwd, bwd

    def __call__(self, *args):
        return _bind(custom_vjp_call_p, self, args)

