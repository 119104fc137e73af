"""Reverse mode: transposing a linear graph, evaluated backwards.

Every equation of a linear graph (made by `linearize_flat`) is linear in its inputs
that come from the graph's inputs; its other inputs are residual constants. Walking the
equations backwards and applying each primitive's transpose rule pulls output
cotangents back to the inputs. Run on arrays it computes a vector-Jacobian product; run
on tracers it records the adjoint graph.
"""
from __future__ import annotations

from ..core.errors import NonDifferentiableError
from ..core.ir import Literal, Var
from ..core.primitive import UndefinedPrimal, Zero, transpose_rules
from ..core.trace import attributed_to
from .jvp import add_tangents


def backward_pass(graph, out_cts) -> list:
    """Cotangents of graph.invars given cotangents of graph.outvars (Zero allowed).
    The graph's constvars and literals are the residuals; every other Var is linear."""
    consts = dict(zip(graph.constvars, graph.consts))
    cts: dict = {}

    def accumulate(v, ct):
        if type(v) is Var and v not in consts and ct is not None and type(ct) is not Zero:
            cts[v] = add_tangents(cts[v], ct) if v in cts else ct

    for a, ct in zip(graph.outvars, out_cts):
        accumulate(a, ct)
    for e in reversed(graph.eqns):
        outs = [cts.pop(v, None) for v in e.outputs]
        if all(c is None for c in outs):
            continue
        outs = [Zero(v.aval) if c is None else c for v, c in zip(e.outputs, outs)]
        args = [a.value if type(a) is Literal else consts[a] if a in consts
                else UndefinedPrimal(a.aval) for a in e.inputs]
        rule = transpose_rules.get(e.prim)
        if rule is None:
            raise NonDifferentiableError(
                f"primitive `{e.prim.name}` appears in a linear graph but has no "
                f"transpose rule")
        with attributed_to(e.source):
            for a, arg, ct in zip(e.inputs, args, rule(outs, *args, **e.params)):
                if type(arg) is UndefinedPrimal:
                    accumulate(a, ct)
    return [cts.get(v, Zero(v.aval)) for v in graph.invars]
