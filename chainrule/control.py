"""Structured control flow and checkpointing: primitives that hold sub-graphs.

    cond(pred, true_fun, false_fun, *operands)     one of two functions, chosen by value
    scan(f, init, xs, length=None, reverse=False)  carry, y = f(carry, x) over xs' axis 0
    fori_loop(lower, upper, body, init)            carry = body(i, carry) for i in range
    while_loop(cond_fun, body_fun, init)           carry = body(carry) while cond(carry)
    checkpoint(f)                                  f whose reverse pass recomputes f

Each function is traced once, with shapes only, into a graph that the primitive keeps
in its parameters (printed inline by the IR printer), so a 10,000-step loop costs one
trace of its body. The primitives run eagerly (a Python loop over the body graph) and
inside any trace; their rules work on the sub-graphs:

- JVP: the same primitive over the JVP of its sub-graph(s). For scan, the tangent loop
  runs over the carries of every iteration, stacked by a first (primal) scan (only the
  carries the tangent body uses: none when the body is linear); so a linearized scan is
  a scan whose carries are all tangents. fori_loop with bounds known when it is called
  is a scan that carries the counter; with traced bounds, a while_loop.
- checkpoint: its JVP is a checkpoint of the JVP sub-graph, so a linearized checkpoint
  keeps only the block's inputs as residuals and its transpose recomputes the rest.
- Transpose: the same primitive over the transposed sub-graph(s), run in the opposite
  direction for scan. A sub-graph of a linear graph mixes primal recomputation with
  linear equations; `transpose_graph` evaluates the first and transposes the second.
- Batching: the same primitive over the batched sub-graph(s); cond with a batched
  predicate evaluates both branches and selects, while_loop with a batched predicate
  runs until every example is done and freezes the finished ones; scan keeps the
  carries that are the same for every example (a counter) unbatched.

Reverse mode through while_loop: when the values are known (eager mode, also under
nested derivatives), the loop's trip count n is read and it is differentiated as a scan
of length n; the backward pass stores the carry of every iteration (memory n times the
carry's size) and runs the body's VJP backwards. With shapes only (inside jit or vmap)
the trip count is unknown when tracing: the tangent is `while_loop_tangent`, which
reruns the primal loop beside the tangents, and its transpose
`while_loop_tangent_transpose` runs the loop forward keeping every carry in a list (the
same memory, n carries) and then the transposed body backwards. Both are loops again
under every rule, so every order works everywhere: the JVP of the tangent loop is the
tangent loop of the loop over (carry, tangents); the JVP of the transpose is the
transpose of a tangent loop whose carry holds the primal tangents too; transposing
either is the other one, or reverse mode through the tangent loop where the JVP of a
transpose made it linear in its primal inputs too (see `_loop_transpose`); batching
freezes finished examples as for while_loop.

All derivative rules bind these same primitives on traceable sub-graphs, so every
derivative is itself differentiable (second order and beyond).
"""
from __future__ import annotations

import functools
import weakref

import numpy as np

from .core.errors import NonDifferentiableError, ShapeError
from .core.ir import Aval, Graph, Literal, Var, aval_of
from .core.primitive import (Zero, batch_rules, impl_rules, is_undefined, primitive,
                             transpose_rules)
from .core.pytree import tree_flatten, tree_unflatten
from .core.trace import Tracer, concrete, eval_graph, trace_flat
from .core.batch_axes import batch_size, batch_to_front, move_batch_axis
from .transforms.batching import batch_eval, batch_graph, closed, inline_consts
from .transforms.jvp import instantiate, jvp_flat, linearize_flat
from .transforms.simplify import dce
from .transforms.transpose import backward_pass


# --------------------------------------------------------------------------- sub-graphs

def _as_array(x):
    return x if isinstance(x, (Tracer, np.ndarray)) else np.asarray(x)


def trace_closed(fun, avals):
    """fun traced once on shapes: (closed graph, its constants). The graph's inputs are
    the constants (values captured from enclosing code) followed by fun's arguments.
    Dead equations are dropped (a JVP sub-graph need not recompute unused values)."""
    graph, _, _ = trace_flat(lambda *a: [_as_array(o) for o in fun(*a)], avals,
                             abstract=True)
    graph = dce(graph)[0]
    return closed(graph), list(graph.consts)


def _cut(seq, *sizes):
    """seq cut into lists of the given sizes, then the rest."""
    ends = np.cumsum((0,) + sizes)
    return [list(seq[a:b]) for a, b in zip(ends[:-1], ends[1:])] + [list(seq[ends[-1]:])]


def _run(graph, args):
    """Evaluates a closed graph by binding its primitives (traceable)."""
    return eval_graph(graph, [], args)


_evaluators: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _run_arrays(graph, args):
    """Evaluates a closed graph on arrays, calling each primitive's implementation
    directly: what the loop primitives run once per iteration when not traced."""
    run = _evaluators.get(graph)
    if run is None:
        run = _evaluators[graph] = _evaluator(graph)
    return run(args)


def _evaluator(graph):
    index = {v: k for k, v in enumerate(graph.invars)}
    steps = []
    for e in graph.eqns:
        ins = [(True, a.value) if isinstance(a, Literal) else (False, index[a])
               for a in e.inputs]
        outs = []
        for v in e.outputs:
            index[v] = len(index)
            outs.append(index[v])
        steps.append((impl_rules[e.prim], ins, outs, e.params, e.prim.multiple_results))
    results = [(True, a.value) if isinstance(a, Literal) else (False, index[a])
               for a in graph.outvars]
    size = len(index)

    def run(args):
        env = list(args) + [None] * (size - len(args))
        for impl, ins, outs, params, multiple in steps:
            out = impl(*[x if lit else env[x] for lit, x in ins], **params)
            if multiple:
                for k, o in zip(outs, out):
                    env[k] = o
            else:
                env[outs[0]] = out
        return [x if lit else env[x] for lit, x in results]
    return run


def _out_avals(graph):
    return [a.aval for a in graph.outvars]


def jvp_graph_of(graph, nonzero, force=None, with_primals=False):
    """The forward-mode sub-graph of a closed graph, traced on shapes:
    (*inputs, *tangents of the inputs marked `nonzero`) -> tangents of its outputs that
    are nonzero (or marked in `force`; those are instantiated), after the outputs
    themselves if `with_primals`. Returns the graph and the mask of outputs it gives
    tangents for."""
    force = force or [False] * len(graph.outvars)
    n = len(graph.invars)
    avals = [v.aval for v in graph.invars] + [v.aval for v, z in zip(graph.invars, nonzero) if z]
    out_mask = []

    def tangent_fun(*args):
        ts = iter(args[n:])
        tangents = [next(ts) if z else None for z in nonzero]
        outs, out_ts = jvp_flat(lambda *a: _run(graph, a), list(args[:n]), tangents)
        out_mask[:] = [(t is not None or f) and av.is_float
                       for t, f, av in zip(out_ts, force, _out_avals(graph))]
        return (list(outs) if with_primals else []) + [
            np.zeros(av.shape, av.dtype) if t is None else t
            for t, m, av in zip(out_ts, out_mask, _out_avals(graph)) if m]

    g, consts = trace_closed(tangent_fun, avals)
    return _without_consts(g, consts), out_mask


def _without_consts(graph, consts):
    """A graph for a param, from one traced on the inputs of another graph: its only
    constants are arrays made while tracing (zeros), baked in as Literals."""
    if not consts:
        return graph
    if any(isinstance(c, Tracer) for c in consts):
        raise NonDifferentiableError(
            "a derivative rule used inside cond/scan/while_loop/checkpoint refers to a "
            "traced value from outside the loop body; pass that value to the custom "
            "rule's function as an argument instead of closing over it")
    k = len(consts)
    return inline_consts(Graph(graph.invars[:k], graph.invars[k:], graph.eqns,
                               graph.outvars, consts))


def transpose_graph(graph, linear, args, out_cts):
    """Cotangents of a graph's inputs marked `linear`, given values of the others in
    `args` (entries at linear positions are ignored). Equations that do not depend on
    linear inputs are evaluated forward (recomputation); the rest is transposed."""
    env = {v: a for v, a, lin in zip(graph.invars, args, linear) if not lin}
    lin_vars = {v for v, lin in zip(graph.invars, linear) if lin}
    read = lambda a: a.value if isinstance(a, Literal) else env[a]
    lin_eqns = []
    for e in graph.eqns:
        if any(isinstance(a, Var) and a in lin_vars for a in e.inputs):
            lin_eqns.append(e)
            lin_vars.update(e.outputs)
            continue
        out = e.prim.bind(*[read(a) for a in e.inputs], **e.params)
        env.update(zip(e.outputs, out if e.prim.multiple_results else [out]))
    residuals = list(dict.fromkeys(a for e in lin_eqns for a in e.inputs
                                   if isinstance(a, Var) and a not in lin_vars))
    residuals += [a for a in graph.outvars if isinstance(a, Var) and a not in lin_vars
                  and a not in residuals]
    lin_graph = Graph(residuals, [v for v, lin in zip(graph.invars, linear) if lin],
                      lin_eqns, graph.outvars, [env[v] for v in residuals])
    return [instantiate(c) for c in backward_pass(lin_graph, out_cts)]


def transposed_graph_of(graph, linear):
    """Closed graph: (*values of the non-linear inputs, *cotangents of the outputs) ->
    cotangents of the linear inputs."""
    res_avals = [v.aval for v, lin in zip(graph.invars, linear) if not lin]
    ct_avals = _out_avals(graph)

    def fun(*args):
        res, cts = iter(args[:len(res_avals)]), args[len(res_avals):]
        full = [None if lin else next(res) for lin in linear]
        return transpose_graph(graph, linear, full, list(cts))

    g, consts = trace_closed(fun, res_avals + ct_avals)
    return _without_consts(g, consts)


def _check_same_avals(got, want, what):
    if [(a.shape, a.dtype) for a in got] != [(a.shape, a.dtype) for a in want]:
        show = lambda avs: "[" + ", ".join(str(a) for a in avs) + "]"
        raise ShapeError(f"{what}: got {show(got)}, expected {show(want)}. The carry must "
                         f"keep its shapes and dtypes from one iteration to the next "
                         f"(e.g. start a float carry from 0.0, not 0)")


# --------------------------------------------------------------------------- scan

def _scan_impl(*args, body, num_consts, num_carry, length, reverse):
    consts, carry = list(args[:num_consts]), list(args[num_consts:num_consts + num_carry])
    xs = args[num_consts + num_carry:]
    y_avals = _out_avals(body)[num_carry:]
    ys = [np.empty((length,) + av.shape, av.dtype) for av in y_avals]
    for i in (reversed(range(length)) if reverse else range(length)):
        out = _run_arrays(body, consts + carry + [x[i] for x in xs])
        carry = out[:num_carry]
        for y, v in zip(ys, out[num_carry:]):
            y[i] = v
    return carry + ys


def _scan_shape(*avals, body, num_consts, num_carry, length, reverse):
    carry = list(avals[num_consts:num_consts + num_carry])
    _check_same_avals(_out_avals(body)[:num_carry], carry, "scan: the body returns a carry")
    return carry + [Aval((length,) + av.shape, av.dtype) for av in _out_avals(body)[num_carry:]]


def _carry_history(body, num_consts, num_carry, keep):
    """The body with the carries it receives (those marked in `keep`) as extra outputs,
    which scan stacks: the residuals of a linearized scan."""
    received = body.invars[num_consts:num_consts + num_carry]
    return Graph([], body.invars, body.eqns,
                 list(body.outvars) + [v for v, k in zip(received, keep) if k], [])


def _used_vars(graph):
    return {a for e in graph.eqns for a in e.inputs if isinstance(a, Var)} | {
        a for a in graph.outvars if isinstance(a, Var)}


def _scan_jvp(primals, tangents, outs, body, num_consts, num_carry, length, reverse):
    nc, nk = num_consts, num_carry
    nonzero = [not isinstance(t, Zero) for t in tangents]
    carry_nz = nonzero[nc:nc + nk]
    while True:                                     # which carries have tangents
        g, out_nz = jvp_graph_of(body, nonzero[:nc] + carry_nz + nonzero[nc + nk:],
                                 force=carry_nz + [False] * (len(body.outvars) - nk))
        grown = [a or b for a, b in zip(carry_nz, out_nz[:nk])]
        if grown == carry_nz:
            break
        carry_nz = grown
    consts, xs = primals[:nc], primals[nc + nk:]
    # The carries each iteration received, as far as the tangent body uses them (none
    # when the body is linear): one more primal scan that stacks them.
    used = _used_vars(g)
    keep = [v in used for v in g.invars[nc:nc + nk]]
    history = scan_p.bind(*primals, body=_carry_history(body, nc, nk, keep), num_consts=nc,
                          num_carry=nk, length=length, reverse=reverse)[len(outs):] \
        if any(keep) else []
    # g's inputs: consts, carry, xs, then tangents of the nonzero ones in that order;
    # the tangent scan wants consts + const tangents | carry tangents | carry, xs, xs tangents
    n_in = len(body.invars)
    tangent_vars = iter(g.invars[n_in:])
    ct_vars = [next(tangent_vars) for z in nonzero[:nc] if z]
    kt_vars = [next(tangent_vars) for z in carry_nz if z]
    xt_vars = list(tangent_vars)
    received = [v for v, k in zip(g.invars[nc:nc + nk], keep) if k]
    order = g.invars[:nc] + ct_vars + kt_vars + received + g.invars[nc + nk:n_in] + xt_vars
    tangent_body = Graph([], order, g.eqns, g.outvars, [])
    const_ts = [t for t, z in zip(tangents[:nc], nonzero[:nc]) if z]
    carry_ts = [instantiate(t) for t, z in zip(tangents[nc:nc + nk], carry_nz) if z]
    xs_ts = [t for t, z in zip(tangents[nc + nk:], nonzero[nc + nk:]) if z]
    result = iter(scan_p.bind(*consts, *const_ts, *carry_ts, *history, *xs, *xs_ts,
                              body=tangent_body, num_consts=nc + len(const_ts),
                              num_carry=len(carry_ts), length=length, reverse=reverse))
    return [next(result) if m else Zero(aval_of(o)) for o, m in
            zip(outs, carry_nz + out_nz[nk:])]


def _scan_transpose(cts, *args, body, num_consts, num_carry, length, reverse):
    nc, nk = num_consts, num_carry
    # Every carry of a linearized scan is a tangent; one given as a value is a zero
    # tangent made concrete by the JVP rule, transposed like the others (and dropped).
    linear = [is_undefined(a) for a in args[:nc]] + [True] * nk + [
        is_undefined(a) for a in args[nc + nk:]]
    lin_consts = [a for a, lin in zip(args[:nc], linear[:nc]) if lin]
    res_consts = [a for a, lin in zip(args[:nc], linear[:nc]) if not lin]
    res_xs = [a for a, lin in zip(args[nc + nk:], linear[nc + nk:]) if not lin]
    cts = [instantiate(c) if isinstance(c, Zero) else c for c in cts]
    ct_carry, ct_ys = cts[:nk], cts[nk:]
    acc = [np.zeros(a.aval.shape, a.aval.dtype) for a in lin_consts]
    n_rc, n_rx, n_lc = len(res_consts), len(res_xs), len(lin_consts)

    def transposed_step(*a):
        """(residual consts | carry cts, const cts so far | residual x_i, y_i cts) ->
        (cts of the carry received, const cts so far + this step's | cts of x_i)."""
        res_c, ct_c = iter(a[:n_rc]), a[n_rc:n_rc + nk]
        acc_c, res_x = a[n_rc + nk:n_rc + nk + n_lc], iter(a[n_rc + nk + n_lc:][:n_rx])
        ct_y = a[n_rc + nk + n_lc + n_rx:]
        full = ([None if lin else next(res_c) for lin in linear[:nc]] + [None] * nk
                + [None if lin else next(res_x) for lin in linear[nc + nk:]])
        got = transpose_graph(body, linear, full, list(ct_c) + list(ct_y))
        return (got[n_lc:n_lc + nk] + [s + g for s, g in zip(acc_c, got[:n_lc])]
                + got[n_lc + nk:])

    avals = [aval_of(x) for x in res_consts + ct_carry + acc] + [
        Aval(np.shape(x)[1:], aval_of(x).dtype) for x in res_xs + ct_ys]
    body_t = _without_consts(*trace_closed(transposed_step, avals))
    out = scan_p.bind(*res_consts, *ct_carry, *acc, *res_xs, *ct_ys, body=body_t,
                      num_consts=n_rc, num_carry=nk + n_lc, length=length,
                      reverse=not reverse)
    ct_init, ct_consts, ct_xs = out[:nk], iter(out[nk:nk + n_lc]), iter(out[nk + n_lc:])
    return ([next(ct_consts) if lin else None for lin in linear[:nc]]
            + [c if is_undefined(a) else None for a, c in zip(args[nc:nc + nk], ct_init)]
            + [next(ct_xs) if lin else None for lin in linear[nc + nk:]])


def _scan_batch(args, dims, body, num_consts, num_carry, length, reverse):
    """The scan of the batched body; carries that are the same for every example (a
    loop counter) stay unbatched."""
    nc, nk = num_consts, num_carry
    size = batch_size(args, dims)
    const_dims = [None if d is None else 0 for d in dims[:nc]]
    x_dims = [None if d is None else 0 for d in dims[nc + nk:]]
    batched_carry = [d is not None for d in dims[nc:nc + nk]]
    while True:                                     # which carries vary over the batch
        carry_dims = [0 if b else None for b in batched_carry]
        batched, found = batch_graph(body, const_dims + carry_dims + x_dims, size,
                                     carry_dims + [0] * (len(body.outvars) - nk))
        grown = [b or f is not None for b, f in zip(batched_carry, found)]
        if grown == batched_carry:
            break
        batched_carry = grown
    consts = [a if d is None else batch_to_front(a, d) for a, d in zip(args[:nc], dims[:nc])]
    carry = [move_batch_axis(a, d, 0, size) if b else a
             for a, d, b in zip(args[nc:nc + nk], dims[nc:nc + nk], batched_carry)]
    xs = [a if d is None else move_batch_axis(a, d, 1, size)
          for a, d in zip(args[nc + nk:], dims[nc + nk:])]
    outs = scan_p.bind(*consts, *carry, *xs, body=batched, num_consts=nc, num_carry=nk,
                       length=length, reverse=reverse)
    return outs, carry_dims + [1] * (len(outs) - nk)


scan_p = primitive("scan", _scan_impl, _scan_shape, multiple_results=True, jvp=_scan_jvp,
                   transpose=_scan_transpose, batch=_scan_batch)
# The scan_p primitive, for code generators:
# scan[body, num_consts, num_carry, length, reverse] *consts *init *xs
# -> *final_carry *ys. body: closed Graph (consts, carry, x slices) -> (carry, y).
# Python: carry = init; for i in range(length) (reversed if reverse):
# carry, y_i = body(consts, carry, [x[i] for x in xs]); ys[k][i] = y_i[k].


def scan(f, init, xs=None, length=None, reverse=False):
    """Loops f(carry, x) -> (carry, y) over the leading axis of xs (pytrees); returns
    (final carry, ys stacked on a new leading axis). xs=None with `length` loops
    without inputs. reverse=True walks xs from the end (ys keep xs' order)."""
    init_leaves, carry_tree = tree_flatten(init)
    init_leaves = [_as_array(x) for x in init_leaves]
    x_leaves, x_tree = tree_flatten(xs)
    x_leaves = [_as_array(x) for x in x_leaves]
    lengths = {np.shape(x)[0] if np.ndim(x) else None for x in x_leaves}
    if None in lengths:
        raise ShapeError("scan: every leaf of xs needs a leading axis to loop over")
    if length is not None:
        lengths.add(int(length))
    if len(lengths) != 1:
        raise ShapeError(f"scan: xs' leading axes and `length` disagree: {sorted(lengths)}"
                         if lengths else "scan needs xs or a length")
    n = lengths.pop()
    y_tree = []

    def body(*leaves):
        carry = tree_unflatten(carry_tree, leaves[:len(init_leaves)])
        x = tree_unflatten(x_tree, leaves[len(init_leaves):])
        out = f(carry, x)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise ShapeError("scan: f must return a pair (new carry, y)")
        new_carry, td = tree_flatten(out[0])
        if td != carry_tree:
            raise ShapeError(f"scan: f returns a carry of structure {td}, but the initial "
                             f"carry has structure {carry_tree}")
        ys, y_td = tree_flatten(out[1])
        y_tree.append(y_td)
        return list(new_carry) + list(ys)

    avals = [aval_of(x) for x in init_leaves] + [
        Aval(np.shape(x)[1:], aval_of(x).dtype) for x in x_leaves]
    graph, consts = trace_closed(body, avals)
    _check_same_avals(_out_avals(graph)[:len(init_leaves)],
                      [aval_of(x) for x in init_leaves], "scan: f returns a carry")
    outs = scan_p.bind(*consts, *init_leaves, *x_leaves, body=graph, num_consts=len(consts),
                       num_carry=len(init_leaves), length=n, reverse=bool(reverse))
    k = len(init_leaves)
    return tree_unflatten(carry_tree, outs[:k]), tree_unflatten(y_tree[-1], outs[k:])


# --------------------------------------------------------------------------- fori_loop

def fori_loop(lower, upper, body_fun, init_val):
    """for i in range(lower, upper): val = body_fun(i, val); returns val. With bounds
    known when called (Python ints, or arrays with values) this is a scan of static
    length, differentiable in both modes; with traced bounds (inside jit) a while_loop."""
    lo, hi = concrete(lower), concrete(upper)
    if lo is None or hi is None:
        def cond_fun(state):
            return state[0] < state[1]

        def body(state):
            i, end, val = state
            return i + 1, end, body_fun(i, val)
        return while_loop(cond_fun, body, (_as_array(lower), _as_array(upper), init_val))[2]
    lo, hi = int(lo), int(hi)

    def step(state, _):
        i, val = state
        return (i + 1, body_fun(i, val)), None
    (_, val), _ = scan(step, (np.asarray(lo, np.int64), init_val), None,
                       length=max(hi - lo, 0))
    return val


# --------------------------------------------------------------------------- while_loop

def _while_impl(*args, cond, body, num_cond_consts, num_body_consts):
    cc, bc, carry = _cut(args, num_cond_consts, num_body_consts)
    while _run_arrays(cond, cc + carry)[0]:
        carry = _run_arrays(body, bc + carry)
    return carry


def _while_shape(*avals, cond, body, num_cond_consts, num_body_consts):
    carry = list(avals[num_cond_consts + num_body_consts:])
    _check_same_avals(_out_avals(body), carry, "while_loop: the body returns a carry")
    return carry


def _trip_count(args, cond, body, num_cond_consts, num_body_consts):
    values = [concrete(a) for a in args]
    cc = values[:num_cond_consts]
    bc = values[num_cond_consts:num_cond_consts + num_body_consts]
    carry, n = values[num_cond_consts + num_body_consts:], 0
    while _run_arrays(cond, cc + carry)[0]:
        carry, n = _run_arrays(body, bc + carry), n + 1
    return n


def _while_jvp(primals, tangents, outs, cond, body, num_cond_consts, num_body_consts):
    ncc, nbc = num_cond_consts, num_body_consts
    if all(concrete(p) is not None for p in primals):
        n = _trip_count(primals, cond, body, ncc, nbc)
        return _scan_jvp(primals[ncc:], tangents[ncc:], outs, body=body, num_consts=nbc,
                         num_carry=len(outs), length=n, reverse=False)
    # Shapes only (inside jit or vmap) the trip count is unknown: the tangent is a loop
    # primitive linear in the tangents that reruns the primal loop beside them.
    const_nz = [not isinstance(t, Zero) for t in tangents[ncc:ncc + nbc]]
    carry_nz = [aval_of(o).is_float for o in outs]
    tangent_body, _ = jvp_graph_of(body, const_nz + carry_nz, force=carry_nz)
    res = iter(while_tangent_p.bind(
        *primals, *[t for t, z in zip(tangents[ncc:ncc + nbc], const_nz) if z],
        *[instantiate(t) for t, z in zip(tangents[ncc + nbc:], carry_nz) if z],
        cond=cond, body=body, tangent_body=tangent_body, num_cond_consts=ncc,
        num_body_consts=nbc))
    return [next(res) if z else Zero(aval_of(o)) for o, z in zip(outs, carry_nz)]


def _while_transpose(cts, *args, **params):
    raise NonDifferentiableError(
        "while_loop appears in a linear graph, which its derivative rules never produce; "
        "this is a bug, please report it")


# The two derivative loops share their parameters: cond and body of the primal loop,
# tangent_body (body consts, carry, const tangents, carry tangents) -> carry tangents,
# linear in the tangents. Inputs: cond consts, body consts, carry, then the tangents
# (while_loop_tangent) or the cotangents of the carry tangents (its transpose).

def split_loop_inputs(args, body, num_cond_consts, num_body_consts):
    """(cond consts, body consts, carry, the rest) of a derivative loop's inputs."""
    return _cut(args, num_cond_consts, num_body_consts, len(body.outvars))


def _num_const_tangents(body, tangent_body, num_body_consts):
    return (len(tangent_body.invars) - num_body_consts - len(body.outvars)
            - len(tangent_body.outvars))


def _while_tangent_impl(*args, cond, body, tangent_body, num_cond_consts, num_body_consts):
    cc, bc, carry, ts = split_loop_inputs(args, body, num_cond_consts,
                                            num_body_consts)
    n_ct = _num_const_tangents(body, tangent_body, num_body_consts)
    const_ts, carry_ts = ts[:n_ct], ts[n_ct:]
    while _run_arrays(cond, cc + carry)[0]:
        carry_ts = _run_arrays(tangent_body, bc + carry + const_ts + carry_ts)
        carry = _run_arrays(body, bc + carry)
    return carry_ts


def _cond_of_more(cond, avals):
    """cond of a loop whose carry has more values (of these avals) at its end."""
    return Graph([], list(cond.invars) + [Var(a) for a in avals], cond.eqns, cond.outvars, [])


def _joint_loop(cond, body, tangent_body, num_body_consts):
    """The tangent loop as a while_loop over (carry, carry tangents) with consts (body
    consts, const tangents): (cond, body) graphs. Its derivatives are the tangent
    loop's (second order)."""
    nbc, nk = num_body_consts, len(body.outvars)
    n_ct = _num_const_tangents(body, tangent_body, nbc)
    bc, k, ct, kt = _cut([v.aval for v in tangent_body.invars], nbc, nk, n_ct)

    def step(*a):
        bc, ct, k, kt = _cut(a, nbc, n_ct, nk)
        return _run(body, bc + k) + _run(tangent_body, bc + k + ct + kt)
    return _cond_of_more(cond, kt), _without_consts(*trace_closed(step, bc + ct + k + kt))


def _while_tangent_jvp(primals, tangents, outs, cond, body, tangent_body, num_cond_consts,
                       num_body_consts):
    """The JVP of the joint loop (carry, carry tangents), keeping the part of the
    carry tangents: another tangent loop, or a scan when the values are known."""
    ncc, nbc, nk = num_cond_consts, num_body_consts, len(body.outvars)
    n_ct = _num_const_tangents(body, tangent_body, nbc)
    joint_cond, joint_body = _joint_loop(cond, body, tangent_body, nbc)

    def joint(xs):
        cc, bc, k, ts = split_loop_inputs(xs, body, ncc, nbc)
        return cc + bc + ts[:n_ct] + k + ts[n_ct:]
    carry = primals[ncc + nbc:ncc + nbc + nk]
    return _while_jvp(joint(primals), joint(tangents), list(carry) + list(outs), joint_cond,
                      joint_body, ncc, nbc + n_ct)[nk:]


while_tangent_p = primitive(
    "while_loop_tangent", _while_tangent_impl,
    lambda *avals, tangent_body, **params: _out_avals(tangent_body),
    multiple_results=True, jvp=_while_tangent_jvp)
# The while_tangent_p primitive, for code generators:
# while_loop_tangent[cond, body, tangent_body, num_cond_consts, num_body_consts]
# *cond_consts *body_consts *init *const_tangents *carry_tangents -> *carry_tangents.
# Python: while cond(cc, c): t = tangent_body(bc, c, const_tangents, t); c = body(bc, c)


_transposed_bodies: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def transposed_tangent_body(body, tangent_body, num_body_consts):
    """(body consts, carry, cotangents of the carry tangents) -> (cotangents of the
    const tangents, of the carry tangents): one step of the transposed loop."""
    got = _transposed_bodies.get(tangent_body)
    if got is None:
        n_res = num_body_consts + len(body.outvars)
        got = _transposed_bodies[tangent_body] = transposed_graph_of(
            tangent_body, [False] * n_res + [True] * (len(tangent_body.invars) - n_res))
    return got


def _while_tangent_transpose_impl(*args, cond, body, tangent_body, num_cond_consts,
                                  num_body_consts):
    """Runs the loop forward keeping every carry, then the transposed tangent body
    backwards: memory grows with the trip count (one carry per iteration)."""
    cc, bc, carry, cts = split_loop_inputs(args, body, num_cond_consts,
                                             num_body_consts)
    transposed = transposed_tangent_body(body, tangent_body, num_body_consts)
    history = []
    while _run_arrays(cond, cc + carry)[0]:
        history.append(carry)
        carry = _run_arrays(body, bc + carry)
    n_const = len(transposed.outvars) - len(cts)
    acc = [np.zeros(a.shape, a.dtype) for a in _out_avals(transposed)[:n_const]]
    for carry in reversed(history):
        out = _run_arrays(transposed, bc + carry + cts)
        acc = [a + o for a, o in zip(acc, out[:n_const])]
        cts = out[n_const:]
    return acc + cts


def _with_primals_jvp_graph(graph, nonzero, *sizes):
    """The graph and its JVP side by side: its inputs cut into groups of the given sizes
    (then the rest), each group followed by the tangents of its `nonzero` inputs ->
    (outputs, tangents of the float outputs)."""
    g, _ = jvp_graph_of(graph, nonzero, force=[a.is_float for a in _out_avals(graph)],
                        with_primals=True)
    n = len(graph.invars)
    groups = _cut(g.invars[:n], *sizes)
    tangents = _cut(g.invars[n:], *[sum(m) for m in _cut(nonzero, *sizes)[:-1]])
    return Graph([], [v for xs, ts in zip(groups, tangents) for v in xs + ts], g.eqns,
                 g.outvars, [])


def _while_tangent_transpose_jvp(primals, tangents, outs, cond, body, tangent_body,
                                 num_cond_consts, num_body_consts):
    """The transpose is s -> L(x)^T s, L(x) the tangent loop's linear map at the primal
    values x. Its tangent L(x)^T ds + (dL(x)[dx])^T s is the transpose of the loop
    u -> (L(x) u, dL(x)[dx] u): a tangent loop whose primal carry is (carry, its
    tangent) and whose tangent body is the JVP of tangent_body in (body consts, carry)."""
    ncc, nbc, nk = num_cond_consts, num_body_consts, len(body.outvars)
    cc, bc, carry, cts = split_loop_inputs(primals, body, ncc, nbc)
    _, d_bc, d_carry, d_cts = split_loop_inputs(tangents, body, ncc, nbc)
    bc_nz = [not isinstance(t, Zero) for t in d_bc]
    k_nz = [a.is_float for a in _out_avals(body)]
    n_ct, n_kt = _num_const_tangents(body, tangent_body, nbc), len(cts)
    aug_body = _with_primals_jvp_graph(body, bc_nz + k_nz, nbc)
    # (bc, d_bc, carry, d_carry, the tangents, their tangents) -> ...
    aug_tangent_body = _with_primals_jvp_graph(
        tangent_body, bc_nz + k_nz + [False] * n_ct + [True] * n_kt, nbc, nk)
    n_dbc = sum(bc_nz)
    aug_cond = _cond_of_more(cond, [v.aval for v, z in zip(body.outvars, k_nz) if z])
    out = while_tangent_transpose_p.bind(
        *cc, *bc, *[t for t, z in zip(d_bc, bc_nz) if z], *carry,
        *[instantiate(t) for t, z in zip(d_carry, k_nz) if z],
        *[instantiate(t) for t in d_cts], *cts, cond=aug_cond, body=aug_body,
        tangent_body=aug_tangent_body, num_cond_consts=ncc, num_body_consts=nbc + n_dbc)
    return out[:n_ct + n_kt]


def _loop_transpose(dual, loop_input_is_cotangent):
    """Transpose rule of a derivative loop: linear in its inputs after (cond consts,
    body consts, carry), the rest x, and possibly also in some entries z of x (as in
    the JVP of a transpose). The loop is then A z + B s_lin (s its last inputs, s_lin
    the linear ones), so the cotangents are, for s_lin, the `dual` loop at x with z = 0
    and, for z, the gradient in z of <cotangent, while_loop_tangent at (x, input)>,
    reverse mode through the tangent loop; the input and the cotangent are the loop's
    inputs s (with s_lin = 0) and its output cotangent w, swapped for the transposed
    loop (<w, L(x)^T s> = <s, L(x) w>). A cond never reads a linear value, so z = 0
    keeps the trip count."""
    def rule(cts, *args, **params):
        n_x = (params["num_cond_consts"] + params["num_body_consts"]
               + len(params["body"].outvars))
        linear = [is_undefined(a) for a in args]
        value = lambda a: np.zeros(a.aval.shape, a.aval.dtype) if is_undefined(a) else a
        x, s = [value(a) for a in args[:n_x]], [value(a) for a in args[n_x:]]
        w = [instantiate(c) for c in cts]
        out = [None] * len(args)
        if any(linear[n_x:]):
            for k, c in enumerate(dual.bind(*x, *w, **params)):
                out[n_x + k] = c if linear[n_x + k] else None
        z_at = [k for k in range(n_x) if linear[k]]
        if z_at:
            loop_input, cotangent = (w, s) if loop_input_is_cotangent else (s, w)

            def loop_of_z(*z):
                xz = list(x)
                for k, v in zip(z_at, z):
                    xz[k] = v
                return while_tangent_p.bind(*xz, *loop_input, **params)
            _, lin = linearize_flat(loop_of_z, [x[k] for k in z_at], [True] * len(z_at))
            for k, c in zip(z_at, backward_pass(lin, cotangent)):
                out[k] = instantiate(c)
        return out
    return rule


while_tangent_transpose_p = primitive(
    "while_loop_tangent_transpose", _while_tangent_transpose_impl,
    lambda *avals, body, tangent_body, num_body_consts, **params: _out_avals(
        transposed_tangent_body(body, tangent_body, num_body_consts)),
    multiple_results=True, jvp=_while_tangent_transpose_jvp)
# The while_tangent_transpose_p primitive, for code generators:
# while_loop_tangent_transpose[cond, body, tangent_body, num_cond_consts, num_body_consts]
# *cond_consts *body_consts *init *carry_tangent_cts -> *const_tangent_cts *carry_tangent_cts.
# Python: run the loop forward appending each carry to a list, then for each stored
# carry c (last first): cts = transposed(bc, c, cts), summing the const parts, where
# transposed = transposed_tangent_body(body, tangent_body, num_body_consts).


def _freeze_finished(cond_b, graph, num_cond_consts, num_body_consts, num_carry, size):
    """A batched loop step (body consts, carry, ...) -> new state, as a graph with the
    cond consts first that keeps the old state (the step's last inputs) of the examples
    whose cond is false: finished examples stay frozen while the others run."""
    ncc, nbc, nk = num_cond_consts, num_body_consts, num_carry
    n_out = len(graph.outvars)

    def step(*a):
        running = _run(cond_b, list(a[:ncc]) + list(a[ncc + nbc:ncc + nbc + nk]))[0]
        new = _run(graph, list(a[ncc:]))
        return [np.where(np.reshape(running, (size,) + (1,) * (np.ndim(o) - 1)), n, o)
                for n, o in zip(new, a[len(a) - n_out:])]
    avals = [v.aval for v in cond_b.invars[:ncc]] + [v.aval for v in graph.invars]
    return _without_consts(*trace_closed(step, avals))


def _batched_loop(args, dims, cond, body, num_cond_consts, num_body_consts,
                  tangent_body=None):
    """(arguments, parameters) of a while_loop (or derivative loop) over batched
    values, every non-const input with its batch axis first. With a batched
    predicate the loop runs while any example runs and freezes the finished ones."""
    ncc, nbc, nk = num_cond_consts, num_body_consts, len(body.outvars)
    size = batch_size(args, dims)
    consts = [a if d is None else batch_to_front(a, d) for a, d in zip(args[:ncc + nbc], dims)]
    const_dims = [None if d is None else 0 for d in dims[:ncc + nbc]]
    rest = [move_batch_axis(a, d, 0, size) for a, d in zip(args[ncc + nbc:], dims[ncc + nbc:])]
    cond_b, pred_dim = batch_graph(cond, const_dims[:ncc] + [0] * nk, size, [None])
    graphs = {"body": batch_graph(body, const_dims[ncc:] + [0] * nk, size, [0] * nk)[0]}
    if tangent_body is not None:
        n_in = len(tangent_body.invars) - nbc
        graphs["tangent_body"] = batch_graph(tangent_body, const_dims[ncc:] + [0] * n_in,
                                             size, [0] * len(tangent_body.outvars))[0]
    if pred_dim[0] is None:
        return consts + rest, dict(cond=cond_b, num_cond_consts=ncc, num_body_consts=nbc,
                                   **graphs)
    cond_any, consts_any = trace_closed(lambda *a: [np.any(_run(cond_b, list(a))[0])],
                                        [v.aval for v in cond_b.invars])
    frozen = {name: _freeze_finished(cond_b, g, ncc, nbc, nk, size)
              for name, g in graphs.items()}
    return consts[:ncc] + consts + rest, dict(
        cond=_without_consts(cond_any, consts_any), num_cond_consts=ncc,
        num_body_consts=ncc + nbc, **frozen)


def _loop_batch(prim):
    """The batch rule of while_loop and of its derivative loops."""
    def rule(args, dims, **params):
        args, params = _batched_loop(args, dims, **params)
        outs = prim.bind(*args, **params)
        return outs, [0] * len(outs)
    return rule


while_p = primitive("while_loop", _while_impl, _while_shape, multiple_results=True,
                    jvp=_while_jvp, transpose=_while_transpose)
for _loop in (while_p, while_tangent_p, while_tangent_transpose_p):
    batch_rules[_loop] = _loop_batch(_loop)
transpose_rules[while_tangent_p] = _loop_transpose(while_tangent_transpose_p, False)
transpose_rules[while_tangent_transpose_p] = _loop_transpose(while_tangent_p, True)
# The while_p primitive, for code generators:
# while_loop[cond, body, num_cond_consts, num_body_consts]
# *cond_consts *body_consts *init -> *final_carry. cond: closed Graph (cond_consts,
# carry) -> bool scalar; body: closed Graph (body_consts, carry) -> carry.
# Python: carry = init; while cond(cond_consts, carry): carry = body(body_consts, carry).


def while_loop(cond_fun, body_fun, init_val):
    """while cond_fun(val): val = body_fun(val); returns val (any pytree of arrays).
    Differentiable in forward and reverse mode; see the module notes on memory."""
    leaves, tree = tree_flatten(init_val)
    leaves = [_as_array(x) for x in leaves]
    avals = [aval_of(x) for x in leaves]

    def cond_flat(*c):
        pred = _as_array(cond_fun(tree_unflatten(tree, c)))
        if np.shape(pred) != ():
            raise ShapeError(f"while_loop: cond_fun must return a scalar, got shape "
                             f"{np.shape(pred)}")
        return [pred]

    def body_flat(*c):
        new, td = tree_flatten(body_fun(tree_unflatten(tree, c)))
        if td != tree:
            raise ShapeError(f"while_loop: body_fun returns structure {td}, but the "
                             f"initial value has structure {tree}")
        return new

    cond_g, cond_consts = trace_closed(cond_flat, avals)
    body_g, body_consts = trace_closed(body_flat, avals)
    _check_same_avals(_out_avals(body_g), avals, "while_loop: body_fun returns a carry")
    outs = while_p.bind(*cond_consts, *body_consts, *leaves, cond=cond_g, body=body_g,
                        num_cond_consts=len(cond_consts), num_body_consts=len(body_consts))
    return tree_unflatten(tree, outs)


# --------------------------------------------------------------------------- cond

def _cond_impl(pred, *args, branches):
    return _run_arrays(branches[1] if pred else branches[0], list(args))


def _cond_shape(pred, *avals, branches):
    if pred.shape != ():
        raise ShapeError(f"cond: the predicate must be a scalar, got shape {pred.shape}")
    return _out_avals(branches[1])


def _cond_jvp(primals, tangents, outs, branches):
    nonzero = [not isinstance(t, Zero) for t in tangents[1:]]
    float_outs = [aval_of(o).is_float for o in outs]
    jvps = tuple(jvp_graph_of(b, nonzero, force=float_outs)[0] for b in branches)
    res = iter(cond_p.bind(primals[0], *primals[1:],
                           *[t for t, z in zip(tangents[1:], nonzero) if z], branches=jvps))
    return [next(res) if f else Zero(aval_of(o)) for o, f in zip(outs, float_outs)]


def _cond_transpose(cts, pred, *args, branches):
    linear = [is_undefined(a) for a in args]
    cts = [instantiate(c) for c in cts]
    transposed = tuple(transposed_graph_of(b, linear) for b in branches)
    res = iter(cond_p.bind(pred, *[a for a in args if not is_undefined(a)], *cts,
                           branches=transposed))
    return [None] + [next(res) if lin else None for lin in linear]


def _cond_batch(args, dims, branches):
    size = batch_size(args, dims)
    pred, pred_dim = args[0], dims[0]
    if pred_dim is None:
        batched = tuple(batch_graph(b, dims[1:], size, [0] * len(b.outvars))[0]
                        for b in branches)
        outs = cond_p.bind(pred, *args[1:], branches=batched)
        return outs, [0] * len(outs)
    # A batched predicate: both branches for every example, then a select.
    pred = batch_to_front(pred, pred_dim)
    false_outs, true_outs = (batch_eval(b, [], args[1:], dims[1:], size) for b in branches)
    outs = []
    for f, fd, t, td in zip(*false_outs, *true_outs):
        t, f = move_batch_axis(t, td, 0, size), move_batch_axis(f, fd, 0, size)
        outs.append(np.where(np.reshape(pred, (size,) + (1,) * (np.ndim(t) - 1)), t, f))
    return outs, [0] * len(outs)


cond_p = primitive("cond", _cond_impl, _cond_shape, multiple_results=True, jvp=_cond_jvp,
                   transpose=_cond_transpose, batch=_cond_batch)
# The cond_p primitive, for code generators:
# cond[branches=(false_graph, true_graph)] pred *operands -> *outs. Both branches are
# closed Graphs with the same inputs and output avals.
# Python: outs = (branches[1] if pred else branches[0])(*operands).


def cond(pred, true_fun, false_fun, *operands):
    """true_fun(*operands) if pred else false_fun(*operands), as one primitive (so it
    works inside jit and vmap, where pred has no value). Both functions must return the
    same structure of shapes and dtypes."""
    leaves, tree = tree_flatten(operands)
    leaves = [_as_array(x) for x in leaves]
    avals = [aval_of(x) for x in leaves]
    pred = _as_array(pred)
    if np.shape(pred) != ():
        raise ShapeError(f"cond: the predicate must be a scalar, got shape {np.shape(pred)}; "
                         f"for elementwise choices use np.where")
    out_trees = []

    def flat(fun):
        def run(*xs):
            out, td = tree_flatten(fun(*tree_unflatten(tree, xs)))
            out_trees.append(td)
            return out
        return run

    (tg, tc), (fg, fc) = trace_closed(flat(true_fun), avals), trace_closed(flat(false_fun), avals)
    if out_trees[0] != out_trees[1] or [(a.shape, a.dtype) for a in _out_avals(tg)] != [
            (a.shape, a.dtype) for a in _out_avals(fg)]:
        raise ShapeError(
            f"cond: the branches return different structures, shapes or dtypes: "
            f"{[str(a) for a in _out_avals(tg)]} and {[str(a) for a in _out_avals(fg)]}")
    # Both branch graphs take (true consts, false consts, operands).
    nt = len(tc)
    true_g = Graph([], tg.invars[:nt] + [Var(aval_of(c)) for c in fc] + tg.invars[nt:],
                   tg.eqns, tg.outvars, [])
    false_g = Graph([], [Var(aval_of(c)) for c in tc] + fg.invars, fg.eqns, fg.outvars, [])
    outs = cond_p.bind(pred, *tc, *fc, *leaves, branches=(false_g, true_g))
    return tree_unflatten(out_trees[0], outs)


# --------------------------------------------------------------------------- checkpoint

def _checkpoint_jvp(primals, tangents, outs, graph):
    nonzero = [not isinstance(t, Zero) for t in tangents]
    float_outs = [aval_of(o).is_float for o in outs]
    g, _ = jvp_graph_of(graph, nonzero, force=float_outs)
    res = iter(checkpoint_p.bind(*primals, *[t for t, z in zip(tangents, nonzero) if z],
                                 graph=g))
    return [next(res) if f else Zero(aval_of(o)) for o, f in zip(outs, float_outs)]


def _checkpoint_transpose(cts, *args, graph):
    linear = [is_undefined(a) for a in args]
    res = iter(checkpoint_p.bind(*[a for a in args if not is_undefined(a)],
                                 *[instantiate(c) for c in cts],
                                 graph=transposed_graph_of(graph, linear)))
    return [next(res) if lin else None for lin in linear]


def _checkpoint_batch(args, dims, graph):
    batched, _ = batch_graph(graph, dims, batch_size(args, dims), [0] * len(graph.outvars))
    outs = checkpoint_p.bind(*args, graph=batched)
    return outs, [0] * len(outs)


checkpoint_p = primitive(
    "checkpoint", lambda *args, graph: _run_arrays(graph, list(args)),
    lambda *avals, graph: _out_avals(graph), multiple_results=True, jvp=_checkpoint_jvp,
    transpose=_checkpoint_transpose, batch=_checkpoint_batch)
# The checkpoint_p primitive, for code generators:
# checkpoint[graph] *args -> *outs: outs = graph(*args). Its
# linearization keeps only args as residuals; the transpose recomputes the rest.


def checkpoint(fun):
    """fun, rematerialized: reverse mode stores only its inputs and recomputes its
    intermediate values in the backward pass (less memory, one more forward of fun)."""
    @functools.wraps(fun)
    def remat(*args):
        leaves, tree = tree_flatten(args)
        leaves = [_as_array(x) for x in leaves]
        out_tree = []

        def flat(*xs):
            out, td = tree_flatten(fun(*tree_unflatten(tree, xs)))
            out_tree.append(td)
            return out
        graph, consts = trace_closed(flat, [aval_of(x) for x in leaves])
        return tree_unflatten(out_tree[-1], checkpoint_p.bind(*consts, *leaves, graph=graph))
    return remat
