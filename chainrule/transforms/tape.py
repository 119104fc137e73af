"""Reverse mode on a tape of per-operation VJPs: `grad`, `vjp` and `jacrev`, except
under `jit` (whose generated code names the source line of each derivative, which the
linearized graph keeps).

Reverse mode is linearize + transpose (`jvp.py`, `transpose.py`). Done operation by
operation as the function runs, that means dispatching every linear operation of every
JVP rule onto a trace, then interpreting the linear graph backwards: most of the time of
small eager gradients. The result for one primitive, though, depends only on its
signature (input shapes and dtypes, parameters, which inputs carry tangents). So the
first time a signature is met, its JVP rule is linearized and transposed *abstractly*,
once, into a small VJP graph from (primal inputs, outputs, output cotangents) to input
cotangents, simplified and kept (`vjp_template`). Running the function then records, per
operation, the template and the values it reads; the backward pass runs the templates
in reverse. The derivatives come from the same JVP and transpose rules, only traced once
per signature instead of once per call.

A signature whose parameters are not plain values (sub-graphs, functions) or whose rule
cannot be traced without values records its own linear graph per call instead (the
general route), and is transposed by `backward_pass`. Inside other transformations the
saved values are tracers, and the templates run by binding on them, so the tape can be
differentiated again.
"""
from __future__ import annotations

import itertools

import numpy as np

from ..core.ir import Literal, aval_of
from ..core.primitive import RuleTable, Zero, impl_rules, jvp_rules
from ..core.trace import Tracer, new_trace, open_traces, trace_flat
from .jvp import JVPTrace, JVPTracer, _no_rule, _quiet_partials, instantiate
from .simplify import simplify
from .transpose import backward_pass, pop_cotangents


# --------------------------------------------------------------------------- templates

def _plain(value) -> bool:
    """A parameter value that identifies a signature by value (not by identity)."""
    if isinstance(value, tuple):
        return all(_plain(v) for v in value)
    return type(value).__hash__ not in (None, object.__hash__)


class Template:
    """The VJP graph of one primitive signature: from the primal inputs and outputs it
    reads (`reads` masks which; the tape keeps only those alive) and the cotangents of
    the floating-point outputs, to the cotangents of the inputs that have tangents.
    It runs as a register program: arguments, then constants, then each equation's
    outputs, in order; a register is dropped after its last use (peak memory)."""
    __slots__ = ("graph", "reads", "consts", "program", "outputs")

    def __init__(self, graph, reads):
        self.graph, self.reads = graph, reads
        literals = [a for e in graph.eqns for a in e.inputs if type(a) is Literal] + \
            [a for a in graph.outvars if type(a) is Literal]
        self.consts = list(graph.consts) + [a.value for a in literals]
        slot = {a: i for i, a in enumerate(graph.invars + graph.constvars + literals)}
        for e in graph.eqns:
            for v in e.outputs:
                slot[v] = len(slot)
        last_use = {slot[a]: i for i, e in enumerate(graph.eqns) for a in e.inputs}
        for a in graph.outvars:
            last_use.pop(slot[a], None)
        dead = [[] for _ in graph.eqns]
        for reg, i in last_use.items():
            dead[i].append(reg)
        self.program = [(e.prim, impl_rules[e.prim], [slot[a] for a in e.inputs], e.params,
                         dead[i]) for i, e in enumerate(graph.eqns)]
        self.outputs = [slot[a] for a in graph.outvars]

    def __call__(self, saved, cts, traced=False):
        """Runs the program: on arrays directly; by binding when values are traced (a
        tape inside eager forward mode, or a pullback differentiated again)."""
        regs = saved + cts + self.consts
        for prim, impl, ins, params, dead in self.program:
            args = [regs[i] for i in ins]
            for i in dead:
                regs[i] = None
            out = prim.bind(*args, **params) if traced else impl(*args, **params)
            del args
            if prim.multiple_results:
                regs.extend(out)
            else:
                regs.append(out)
        return [regs[i] for i in self.outputs]


def vjp_template(prim, in_avals, params, with_tangent):
    """The Template of prim at this signature, or None when its JVP rule cannot be
    traced without values."""
    out_avals = prim.shape(*in_avals, **params)
    ct_avals = [av for av in out_avals if av.is_float]
    n_in, n_out = len(in_avals), len(out_avals)
    rule = jvp_rules[prim]

    def vjp(*args):
        primals, outs, float_cts = args[:n_in], args[n_in:n_in + n_out], iter(args[n_in + n_out:])
        cts = [next(float_cts) if av.is_float else Zero(av) for av in out_avals]
        with new_trace(abstract=True) as lin:
            tangents = [lin.new_input(av) if t else Zero(av)
                        for av, t in zip(in_avals, with_tangent)]
            out_tangents = rule(list(primals), tangents, list(outs), **params)
            graph = lin.graph([t._var for t in tangents if type(t) is not Zero],
                              [instantiate(t) for t in out_tangents])
        return [instantiate(c) for c in backward_pass(graph, cts)]
    try:
        graph, _, _ = trace_flat(vjp, list(in_avals) + out_avals + ct_avals, abstract=True)
    except Exception:       # a value-dependent rule: the general route runs it on values
        return None
    graph = simplify(graph)
    used = {a for e in graph.eqns for a in e.inputs} | set(graph.outvars)
    reads = tuple(v in used for v in graph.invars[:n_in + n_out])
    graph.invars = [v for v, r in zip(graph.invars, reads) if r] + graph.invars[n_in + n_out:]
    return Template(graph, reads)


_templates: dict = {}
_seen_once: dict = {}           # signatures met once, not yet given a template
TEMPLATE_AT_SECOND_SIGHT = True     # False: a template at once (the tests take every route)
_templates_version = [RuleTable.version]     # the rules the cached templates come from
TEMPLATE_CACHE_SIZE = 4096


def _template_for(prim, primals, params, tangents):
    """The cached Template for this call's signature (None: take the general route).
    A template is made the second time a signature is met, so that code whose shapes
    change at every step (growing arrays) does not pay for templates it never reuses."""
    if _templates_version[0] != RuleTable.version:
        _templates.clear()
        _seen_once.clear()
        _templates_version[0] = RuleTable.version
    try:
        key = (prim, *params.items(), *[(type(p), p.shape, p.dtype, t is None)
                                         for p, t in zip(primals, tangents)])
        return _templates[key]
    except KeyError:
        pass
    except (AttributeError, TypeError):     # a Python scalar operand; unhashable params
        return None
    if not all(_plain(v) for v in params.values()):
        return None     # sub-graphs or functions: a new signature at every call
    if TEMPLATE_AT_SECOND_SIGHT and _seen_once.pop(key, None) is None:
        if len(_seen_once) >= TEMPLATE_CACHE_SIZE:
            _seen_once.clear()
        _seen_once[key] = True
        return None
    if len(_templates) >= TEMPLATE_CACHE_SIZE:
        _templates.clear()
    template = _templates[key] = vjp_template(
        prim, tuple(aval_of(p) for p in primals), params,
        tuple(t is not None for t in tangents))
    return template


# --------------------------------------------------------------------------- the tape

class Node:
    """One recorded operation: `vjp(saved, cts)` pulls the cotangents of its
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
        if prim not in jvp_rules:
            raise _no_rule(prim)
        template = _template_for(prim, primals, params, tangents)
        if template is not None:
            saved = [v for v, r in zip([*primals, *outs], template.reads) if r]
            vjp = template
        else:
            saved, vjp = None, _linear_graph_vjp(prim, primals, tangents, outs, params)
        in_refs = [t for t in tangents if t is not None]
        if len(outs) == 1:
            ref = next(self.refs)
            self.nodes.append(Node(vjp, saved, in_refs, [ref], None))
            return [ref]
        refs = [next(self.refs) if o.dtype.kind in "fc" else None for o in outs]
        self.nodes.append(Node(vjp, saved, in_refs, [r for r in refs if r is not None],
                               [aval_of(o) for o, r in zip(outs, refs) if r is not None]))
        return refs


def _linear_graph_vjp(prim, primals, tangents, outs, params):
    """The general route: this call's linear graph, transposed when pulled back."""
    with new_trace(abstract=True) as lin:
        ts = [lin.new_input(aval_of(p)) if t is not None else Zero(aval_of(p))
              for p, t in zip(primals, tangents)]
        result = jvp_rules[prim](list(primals), ts, list(outs), **params)
        graph = lin.graph([t._var for t in ts if type(t) is not Zero],
                          [instantiate(t) for t in result])
    float_out = [o.dtype.kind in "fc" for o in outs]

    def vjp(saved, float_cts, traced):
        cts = iter(float_cts)
        return [instantiate(c) for c in backward_pass(
            graph, [next(cts) if f else Zero(v.aval) for f, v in zip(float_out, graph.outvars)])]
    return vjp


def _add(cts, ref, ct):
    cts[ref] = cts[ref] + ct if ref in cts else ct


def tape_flat(fun, primals, differentiable):
    """Runs fun once on arrays, recording the tape. Returns (outputs, pullback) where
    pullback(output cotangents, None for zero) gives the cotangents of the
    differentiable inputs (None where nothing flowed back)."""
    with new_trace(kind=TapeTrace) as trace, _quiet_partials():
        in_refs = [next(trace.refs) if d else None for d in differentiable]
        outs = fun(*[JVPTracer(trace, p, r) for p, r in zip(primals, in_refs)])
        mine = [type(o) is JVPTracer and o._trace is trace for o in outs]
        values = [o._value if m else o for o, m in zip(outs, mine)]
        out_refs = [o._tangent if m else None for o, m in zip(outs, mine)]
    nodes = trace.nodes

    def pullback(out_cts):
        cts: dict = {}
        for r, ct in zip(out_refs, out_cts):
            if r is not None and ct is not None:
                _add(cts, r, ct)
        traced = trace.nested or any(isinstance(c, Tracer) for c in out_cts)
        with _quiet_partials():
            for node in reversed(nodes):
                pulled = pop_cotangents(cts, node.out_refs)
                if pulled is None:
                    continue
                if node.out_avals is not None:          # several outputs
                    pulled = [np.zeros(av.shape, av.dtype) if c is None else c
                              for c, av in zip(pulled, node.out_avals)]
                for r, ct in zip(node.in_refs, node.vjp(node.saved, pulled, traced)):
                    _add(cts, r, ct)
        return [None if r is None else cts.get(r) for r in in_refs]
    return values, pullback
