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


def _accumulate(cts, atoms, args, new_cts):
    """Adds each new cotangent to the running cotangent of its atom (the linear ones:
    those whose arg is an UndefinedPrimal)."""
    for a, arg, ct in zip(atoms, args, new_cts):
        if type(arg) is UndefinedPrimal and ct is not None and type(ct) is not Zero:
            cts[a] = add_tangents(cts[a], ct) if a in cts else ct


def pop_cotangents(cts: dict, keys) -> list | None:
    """Removes the cotangents of `keys` from `cts` and returns them (None for those
    that never arrived), or None when none did."""
    if len(keys) == 1:
        ct = cts.pop(keys[0], None)
        return None if ct is None else [ct]
    pulled = [cts.pop(k, None) for k in keys]
    return None if all(c is None for c in pulled) else pulled


def backward_pass(graph, out_cts) -> list:
    """Cotangents of graph.invars given cotangents of graph.outvars (Zero allowed).
    The graph's constvars and literals are the residuals; every other Var is linear."""
    consts = dict(zip(graph.constvars, graph.consts))
    cts: dict = {}

    linear_outs = [UndefinedPrimal(v.aval) if type(v) is Var and v not in consts else None
                   for v in graph.outvars]
    _accumulate(cts, graph.outvars, linear_outs, out_cts)
    for e in reversed(graph.eqns):
        outs = pop_cotangents(cts, e.outputs)
        if outs is None:
            continue
        outs = [Zero(v.aval) if c is None else c for v, c in zip(e.outputs, outs)]
        args = [a.value if type(a) is Literal else consts[a] if a in consts
                else UndefinedPrimal(a.aval) for a in e.inputs]
        rule = transpose_rules.get(e.prim)
        if rule is None:
            raise NonDifferentiableError(
                f"primitive `{e.prim.name}` appears in a linear graph but has no "
                f"transpose rule")
        if e.source is None:
            _accumulate(cts, e.inputs, args, rule(outs, *args, **e.params))
        else:
            with attributed_to(e.source):   # sums of cotangents belong to the line too
                _accumulate(cts, e.inputs, args, rule(outs, *args, **e.params))
    return [cts.get(v, Zero(v.aval)) for v in graph.invars]
