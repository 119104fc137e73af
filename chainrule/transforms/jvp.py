"""Forward mode and linearization (forward mode with the tangents traced).

Both apply each primitive's JVP rule to (primal values, tangents). The tangents decide
what that computes:

- arrays (or tracers of an enclosing trace): forward mode, evaluated;
- tracers of a new abstract trace: the *linearized* graph, a graph of linear primitives
  from input tangents to output tangents whose constants are residuals computed from
  the primal values. Reverse mode transposes it (see `transpose.py`).

Two drivers: `jvp_graph` walks an already traced graph (whose trace kept every primal
value); `JVPTrace` applies the rules as the user's function runs, so that the eager
`grad`/`vjp`/`jvp` record each operation once and keep only the residuals alive.
"""
from __future__ import annotations

import numpy as np

from ..core.errors import LeakedTracerError, NonDifferentiableError
from ..core.ir import Literal, Var, aval_of
from ..core.primitive import Zero, jvp_rules
from ..core.trace import Tracer, attributed_to, new_trace, user_source


def zeros(aval):
    return np.zeros(aval.shape, aval.dtype)


def instantiate(t):
    """An actual array for a possibly symbolic zero."""
    return zeros(t.aval) if isinstance(t, Zero) else t


def add_tangents(a, b):
    if isinstance(a, Zero):
        return b
    if isinstance(b, Zero):
        return a
    return a + b


def _no_rule(prim):
    return NonDifferentiableError(
        f"primitive `{prim.name}` has no derivative rule; its result depends on a "
        f"differentiated input. Wrap the computation with chainrule.stop_gradient if its "
        f"derivative is meant to be zero, or give it a rule with chainrule.custom_jvp / "
        f"custom_vjp.")


def jvp_graph(graph, values: dict, in_tangents) -> list:
    """Output tangents of `graph` at the primal point recorded in `values`."""
    tangents = {v: t for v, t in zip(graph.invars, in_tangents)
                if type(t) is not Zero and v.aval.is_float}
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for e in graph.eqns:
            ts = [tangents.get(a, None) if type(a) is Var else None for a in e.inputs]
            if not any(t is not None for t in ts):
                continue
            if not any(v.aval.dtype.kind in "fc" for v in e.outputs):
                continue
            rule = jvp_rules.get(e.prim)
            if rule is None:
                raise _no_rule(e.prim)
            primals = [a.value if type(a) is Literal else values[a] for a in e.inputs]
            ts = [Zero(a.aval) if t is None else t for a, t in zip(e.inputs, ts)]
            with attributed_to(e.source):
                outs = rule(primals, ts, [values[v] for v in e.outputs], **e.params)
            for v, t in zip(e.outputs, outs):
                if type(t) is not Zero and v.aval.dtype.kind in "fc":
                    tangents[v] = t
    return [tangents[a] if type(a) is Var and a in tangents else Zero(a.aval)
            for a in graph.outvars]


# --------------------------------------------------------------------------- online forward mode

class JVPTracer(Tracer):
    """A primal value (one level down) with its tangent (None: a symbolic zero)."""
    __slots__ = ("_tangent", "_token")

    def __init__(self, trace, value, tangent):
        self._trace, self._var, self._value = trace, None, value
        self._tangent = tangent
        self._token = object()

    aval = property(lambda self: aval_of(self._value))
    shape = property(lambda self: self._value.shape)
    dtype = property(lambda self: self._value.dtype)
    ndim = property(lambda self: self._value.ndim)
    size = property(lambda self: self._value.size)

    def _rebind(self, new):
        self._value, self._tangent, self._token = new._value, new._tangent, object()

    def _version(self):
        return self._token

    def _snapshot(self):
        return JVPTracer(self._trace, self._value, self._tangent)


def _quiet_partials():
    """Partial derivatives may divide by zero where a tangent is zero anyway (sqrt at
    0): NumPy's warnings are silenced while a function runs under forward mode (values
    still show any inf or nan)."""
    return np.errstate(divide="ignore", invalid="ignore", over="ignore")


class JVPTrace:
    """Forward mode as the function runs: each operation binds its primitive on the
    primal values and applies its JVP rule to the tangents."""

    def __init__(self, level, abstract=False, record_source=False):
        self.level = level
        self.record_source = record_source
        self.active = True

    def process(self, prim, args, params):
        primals, tangents, live, lower = [], [], False, False
        for a in args:
            if type(a) is JVPTracer and a._trace is self:
                t = a._tangent
                if t is not None:
                    live = True
                a = a._value
            else:
                t = None
                if isinstance(a, Tracer) and not a._trace.active:
                    raise LeakedTracerError(
                        f"`{prim.name}` was applied to a traced value that escaped the "
                        f"function it belongs to; return it instead of storing it")
            if not lower and isinstance(a, Tracer):
                lower = True
            primals.append(a)
            tangents.append(t)
        out = prim.bind(*primals, **params) if lower else prim.impl(*primals, **params)
        if not prim.multiple_results:
            live = live and out.dtype.kind in "fc"
            return JVPTracer(self, out, self._tangents(prim, primals, tangents, [out], params)[0]
                             if live else None)
        outs = list(out)
        if live and any(o.dtype.kind in "fc" for o in outs):
            out_tangents = self._tangents(prim, primals, tangents, outs, params)
        else:
            out_tangents = [None] * len(outs)
        return [JVPTracer(self, o, t) for o, t in zip(outs, out_tangents)]

    def _tangents(self, prim, primals, tangents, outs, params):
        """The JVP rule's output tangents (None for zero or non-float outputs)."""
        rule = jvp_rules.get(prim)
        if rule is None:
            raise _no_rule(prim)
        ts = [Zero(aval_of(p)) if t is None else t for p, t in zip(primals, tangents)]
        if self.record_source:
            with attributed_to(user_source()):
                result = rule(primals, ts, outs, **params)
        else:
            result = rule(primals, ts, outs, **params)
        return [None if type(t) is Zero or o.dtype.kind not in "fc" else t
                for o, t in zip(outs, result)]


def jvp_flat(fun, primals, tangents):
    """Runs fun(*tracers) (fun takes and returns flat lists) with each primal carrying
    its tangent (None: zero). Returns (primal outputs, output tangents or None)."""
    with new_trace(kind=JVPTrace) as trace, _quiet_partials():
        outs = fun(*[JVPTracer(trace, p, t) for p, t in zip(primals, tangents)])
        values = [o._value if type(o) is JVPTracer and o._trace is trace else o for o in outs]
        out_tangents = [o._tangent if type(o) is JVPTracer and o._trace is trace else None
                        for o in outs]
    return values, out_tangents


def linearize_flat(fun, primals, differentiable):
    """Runs fun once; returns (primal outputs, linear graph from the tangents of the
    differentiable inputs to the output tangents)."""
    with new_trace(abstract=True) as lin:
        ins = [lin.new_input(aval_of(p)) if d else None for p, d in zip(primals, differentiable)]
        outs, out_tangents = jvp_flat(fun, primals, ins)
        graph = lin.graph([t._var for t in ins if t is not None],
                          [zeros(aval_of(o)) if t is None else t
                           for o, t in zip(outs, out_tangents)])
    return outs, graph
