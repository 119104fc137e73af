"""Reverse mode on a tape of per-operation VJPs: `grad`, `vjp` and `jacrev`, except
under `jit` (whose generated code names the source line of each derivative, which the
linearized graph keeps).

Running the function records, per operation, how to pull cotangents back: the VJP
template of its signature (`templates.py`: the JVP rule linearized and transposed once,
abstractly) and the values the template reads; the backward pass runs them in reverse.
An operation without a template records its own linear graph, transposed by
`backward_pass` when pulled back (the general route). Inside other transformations the
saved values are tracers and the templates run by binding on them, so the tape can be
differentiated again.
"""
from __future__ import annotations

import itertools

import numpy as np

from ..core.ir import aval_of
from ..core.primitive import DiagonalBatch, Zero, jvp_rules
from ..core.trace import Tracer, new_trace, open_traces, trace_flat
from .basis import apply_structured
from .batching import vmap_graph_eval
from .jvp import JVPTrace, JVPTracer, _no_rule, _quiet_partials, instantiate
from .templates import build, template_for
from .transpose import backward_pass, pop_cotangents


def _linear_graph(rule, primals, tangents, outs, params):
    """The JVP rule applied with tangents traced: the linear graph from the tangents of
    the inputs that have one to the output tangents, and which outputs have a tangent
    (floating-point, not a symbolic zero)."""
    with new_trace(abstract=True) as lin:
        ts = [lin.new_input(aval_of(p)) if t else Zero(aval_of(p))
              for p, t in zip(primals, tangents)]
        result = rule(list(primals), ts, list(outs), **params)
        graph = lin.graph([t._var for t in ts if type(t) is not Zero],
                          [instantiate(t) for t in result])
    return graph, [type(t) is not Zero and aval_of(o).is_float for t, o in zip(result, outs)]


def vjp_template(prim, in_avals, params, with_tangent):
    """The VJP of prim at this signature: from (primal inputs, outputs, cotangents of
    the floating-point outputs) to the cotangents of the inputs with tangents."""
    out_avals = prim.shape(*in_avals, **params)
    n_in, n_out = len(in_avals), len(out_avals)
    live = []

    def vjp(*args):
        primals, outs, float_cts = args[:n_in], args[n_in:n_in + n_out], iter(args[n_in + n_out:])
        graph, live[:] = _linear_graph(jvp_rules[prim], primals, with_tangent, outs, params)
        cts = [next(float_cts) if av.is_float else None for av in out_avals]
        return [instantiate(c) for c in backward_pass(graph, cts)]
    return build(vjp, [*in_avals, *out_avals, *[av for av in out_avals if av.is_float]],
                 n_in + n_out, live)


# --------------------------------------------------------------------------- the tape

class Node:
    """One recorded operation: `vjp(saved + cts, traced)` pulls the cotangents of its
    floating-point outputs (`out_refs`) back to its inputs that have tangents
    (`in_refs`); `out_avals` is kept for operations with several outputs."""
    __slots__ = ("vjp", "saved", "in_refs", "out_refs", "out_avals")

    def __init__(self, vjp, saved, in_refs, out_refs, out_avals):
        self.vjp, self.saved, self.in_refs = vjp, saved, in_refs
        self.out_refs, self.out_avals = out_refs, out_avals


class TapeTrace(JVPTrace):
    """Forward evaluation whose tangents are references (ints) to tape entries. Inside
    eager forward mode (`nested`), the values it saves are tracers of that mode."""

    def __init__(self, level, abstract=False, record_source=False):
        super().__init__(level, abstract, record_source)
        self.nodes: list = []
        self.refs = itertools.count()
        self.nested = bool(open_traces())

    def _tangents(self, prim, primals, tangents, outs, params):
        template = template_for(vjp_template, prim, primals, params, tangents, outs)
        if template is not None:
            values = primals + outs
            saved = [values[i] for i in template.read_at]
            vjp, live = template, template.live
        elif prim not in jvp_rules:
            raise _no_rule(prim)
        else:
            saved, (vjp, live) = [], _linear_graph_vjp(prim, primals, tangents, outs, params)
        in_refs = [t for t in tangents if t is not None]
        if len(outs) == 1:
            if not live[0]:
                return [None]       # a symbolic zero: downstream sees no tangent
            refs = [next(self.refs)]
            self.nodes.append(Node(vjp, saved, in_refs, refs, None))
            return refs
        if not any(live):
            return [None] * len(outs)
        refs = [next(self.refs) if t else None for t in live]
        floats = [o.dtype.kind in "fc" for o in outs]
        self.nodes.append(Node(vjp, saved, in_refs, [r for r, f in zip(refs, floats) if f],
                               [aval_of(o) for o, f in zip(outs, floats) if f]))
        return refs


class LinearGraphVJP:
    """The general route: one call's linear graph, transposed when pulled back."""
    __slots__ = ("graph", "floats")

    def __init__(self, graph, floats):
        self.graph, self.floats = graph, floats

    def __call__(self, float_cts, traced=False):
        cts = iter(float_cts)
        return [instantiate(c) for c in backward_pass(
            self.graph, [next(cts) if f else None for f in self.floats])]

    def batched(self, float_cts, dims, size):
        """On a batch of cotangents: the backward pass traced once, run by vmap."""
        avals = [v.aval for v, f in zip(self.graph.outvars, self.floats) if f]
        adjoint, _, _ = trace_flat(lambda *cts: self(list(cts)), avals, abstract=True)
        return vmap_graph_eval(adjoint, adjoint.consts, float_cts, dims, size,
                               apply=apply_structured)


def _linear_graph_vjp(prim, primals, tangents, outs, params):
    """The general route's VJP, and which outputs have a tangent."""
    graph, live = _linear_graph(jvp_rules[prim], primals, [t is not None for t in tangents],
                                outs, params)
    return LinearGraphVJP(graph, [o.dtype.kind in "fc" for o in outs]), live


def _add(cts, ref, ct):
    if ref not in cts:
        cts[ref] = ct
        return
    old = cts[ref]
    if type(old) is DiagonalBatch and type(ct) is DiagonalBatch and old.d.shape == ct.d.shape:
        cts[ref] = DiagonalBatch(old.d + ct.d)
    elif type(old) is DiagonalBatch or type(ct) is DiagonalBatch:
        cts[ref] = _dense(old) + _dense(ct)
    else:
        cts[ref] = old + ct


def _dense(ct):
    return ct.dense() if type(ct) is DiagonalBatch else ct


def tape_flat(fun, primals, differentiable):
    """Runs fun once on arrays, recording the tape. Returns (outputs, pullback) where
    pullback(output cotangents, None for zero) gives the cotangents of the
    differentiable inputs (None where nothing flowed back). With `batch=n` the
    cotangents are batches of n along a leading axis (or a DiagonalBatch, such as the
    identity basis of a Jacobian), and so are the results: every step runs batched.
    `last=True` promises no further pullback: each operation's saved values are then
    released as the pass goes, and a template may overwrite those it alone holds."""
    with new_trace(kind=TapeTrace) as trace, _quiet_partials():
        in_refs = [next(trace.refs) if d else None for d in differentiable]
        outs = fun(*[JVPTracer(trace, p, r) for p, r in zip(primals, in_refs)])
        mine = [type(o) is JVPTracer and o._trace is trace for o in outs]
        values = [o._value if m else o for o, m in zip(outs, mine)]
        out_refs = [o._tangent if m else None for o, m in zip(outs, mine)]
    nodes = trace.nodes

    def pullback(out_cts, batch=None, last=False):
        cts: dict = {}
        for r, ct in zip(out_refs, out_cts):
            if r is not None and ct is not None:
                _add(cts, r, ct)
        traced = trace.nested or any(isinstance(c, Tracer) for c in out_cts)
        lead = () if batch is None else (batch,)
        with _quiet_partials():
            for node in reversed(nodes):
                saved = node.saved
                if last:
                    node.saved = None
                pulled = pop_cotangents(cts, node.out_refs)
                if pulled is None:
                    continue
                if node.out_avals is not None:          # several outputs
                    pulled = [np.zeros(lead + av.shape, av.dtype) if c is None and r is not None
                              else c for c, r, av in zip(pulled, node.out_refs, node.out_avals)]
                n_saved, args = len(saved), saved + pulled
                del saved, pulled       # the template may overwrite what only it holds
                in_cts = node.vjp(args, traced) if batch is None else node.vjp.batched(
                    args, [None] * n_saved + [0] * (len(args) - n_saved), batch)
                for r, ct in zip(node.in_refs, in_cts):
                    _add(cts, r, ct)
        return [None if r is None else _dense(cts[r]) if r in cts else None for r in in_refs]
    return values, pullback
