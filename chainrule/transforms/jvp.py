"""Forward mode over a graph, and linearization (forward mode with the tangents traced).

`jvp_graph` walks a traced graph with the primal value of every Var at hand (the
trace kept them) and applies each primitive's JVP rule. The tangents it is given decide
what it computes:

- arrays (or tracers of an enclosing trace): forward mode, evaluated;
- tracers of a new abstract trace: the *linearized* graph, a graph of linear primitives
  from input tangents to output tangents whose constants are residuals computed from
  the primal values. Reverse mode transposes it (see `transpose.py`).
"""
from __future__ import annotations

import numpy as np

from ..core.errors import NonDifferentiableError
from ..core.ir import Literal, Var
from ..core.primitive import Zero, jvp_rules
from ..core.trace import attributed_to, new_trace


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
                raise NonDifferentiableError(
                    f"primitive `{e.prim.name}` has no derivative rule; its result "
                    f"depends on a differentiated input. Wrap the computation with "
                    f"chainrule.stop_gradient if its derivative is meant to be zero, or "
                    f"give it a rule with chainrule.custom_jvp / custom_vjp.")
            primals = [a.value if type(a) is Literal else values[a] for a in e.inputs]
            ts = [Zero(a.aval) if t is None else t for a, t in zip(e.inputs, ts)]
            with attributed_to(e.source):
                outs = rule(primals, ts, [values[v] for v in e.outputs], **e.params)
            for v, t in zip(e.outputs, outs):
                if type(t) is not Zero and v.aval.dtype.kind in "fc":
                    tangents[v] = t
    return [tangents[a] if type(a) is Var and a in tangents else Zero(a.aval)
            for a in graph.outvars]


def linearize_graph(graph, values: dict, differentiable):
    """The linear graph from the tangents of the invars marked `differentiable` to the
    output tangents (zero outputs become zero constants)."""
    with new_trace(abstract=True) as lin:
        ins = [lin.new_input(v.aval) if d else Zero(v.aval)
               for v, d in zip(graph.invars, differentiable)]
        outs = [instantiate(t) for t in jvp_graph(graph, values, ins)]
        return lin.graph([t._var for t in ins if not isinstance(t, Zero)], outs)
