"""Emitters of the primitives that derivative rules and custom rules make, so that the
source of their derivatives is standalone NumPy like the rest:

- while_loop_tangent: a Python while loop updating the tangents beside the carry;
- while_loop_tangent_transpose: the loop forward appending each carry to a list, then
  the transposed tangent body over the list backwards (memory: one carry per step);
- custom_jvp_call, custom_vjp_call, custom_vjp_lin: the user's function (or, for
  custom_vjp_lin, the transposed bwd rule) traced once on the equation's shapes into a
  function of the module. Their derivatives were traced into the graph already; what
  remains is the function itself, which chainrule traced to get its shapes;
- tria and qr_tria (chainrule.linalg): their implementation traced likewise (the QR,
  then gathers for the signs and the padding); pinv: np.linalg.pinv with its cutoff.
"""
from __future__ import annotations

from .. import control, linalg
from ..core.trace import trace_flat
from ..transforms import custom
from ..transforms.batching import closed
from .emitters import NAMESPACE, _carries, _register, _targets, dtype_source


def _while_tangent(ctx, *args, cond, body, tangent_body, num_cond_consts, num_body_consts):
    test = ctx.function(cond, "while_cond")
    step = ctx.function(body, "while_body")
    tangent_step = ctx.function(tangent_body, "tangent_body")
    cc, bc, init, ts = control.split_loop_inputs(args, body, num_cond_consts,
                                                 num_body_consts)
    n_const_ts = len(ts) - len(tangent_body.outvars)
    carry, tangents = [ctx.fresh() for _ in init], _carries(ctx, len(ctx.outs))
    step_args = bc + carry + ts[:n_const_ts] + tangents
    return [f"{_targets(carry)} = {_targets(init)}",
            f"{_targets(tangents)} = {_targets(ts[n_const_ts:])}",
            f"while {test}({', '.join(cc + carry)})[0]:",
            f"    {_targets(tangents)} = {tangent_step}({', '.join(step_args)})",
            f"    {_targets(carry)} = {step}({', '.join(bc + carry)})"]


def _while_tangent_transpose(ctx, *args, cond, body, tangent_body, num_cond_consts,
                             num_body_consts):
    transposed = control.transposed_tangent_body(body, tangent_body, num_body_consts)
    test = ctx.function(cond, "while_cond")
    step = ctx.function(body, "while_body")
    back = ctx.function(transposed, "transposed_body")
    cc, bc, init, cts = control.split_loop_inputs(args, body, num_cond_consts,
                                                  num_body_consts)
    carry, history = [ctx.fresh() for _ in init], ctx.fresh()
    outs = _carries(ctx, len(ctx.outs))
    n_const = len(outs) - len(cts)
    acc, ct_names = outs[:n_const], outs[n_const:]
    parts = [ctx.fresh() for _ in acc]
    lines = [f"{_targets(carry)} = {_targets(init)}", f"{history} = []",
             f"while {test}({', '.join(cc + carry)})[0]:",
             f"    {history}.append(({_targets(carry)}))",
             f"    {_targets(carry)} = {step}({', '.join(bc + carry)})"]
    lines += [f"{a} = {NAMESPACE}.zeros({v.aval.shape!r}, {dtype_source(v.aval.dtype)})"
              for a, v in zip(acc, transposed.outvars)]
    lines += [f"{_targets(ct_names)} = {_targets(cts)}",
              f"for {_targets(carry)} in reversed({history}):",
              f"    {_targets(parts + ct_names)} = {back}({', '.join(bc + carry + ct_names)})"]
    return lines + [f"    {a} = {a} + {p}" for a, p in zip(acc, parts)]


def _traced_impl(suffix=""):
    """Emitter of a primitive whose implementation is NumPy code chainrule can trace:
    that code as a function of the module, named after the user's function for a
    custom rule's call, else after the primitive."""
    def emit(ctx, *args, **params):
        prim = ctx.eqn.prim
        graph, _, _ = trace_flat(lambda *xs: list(prim.impl(*xs, **params)), ctx.in_avals,
                                 abstract=True)
        fn = ctx.function(closed(graph), f"{params.get('call', prim.name)}{suffix}")
        return f"{fn}({', '.join([ctx.const(c) for c in graph.consts] + list(args))})"
    return emit


_register(control.while_tangent_p, _while_tangent, view=True)
_register(control.while_tangent_transpose_p, _while_tangent_transpose, view=True)
_register(custom.custom_jvp_call_p, _traced_impl(), view=True)
_register(custom.custom_vjp_call_p, _traced_impl(), view=True)
_register(custom.custom_vjp_lin_p, _traced_impl("_forward"), view=True)
_register(linalg.tria_p, _traced_impl())
_register(linalg.qr_tria_p, _traced_impl())
_register(linalg.pinv_p, lambda ctx, a: f"{NAMESPACE}.linalg.pinv({a}, rtol={linalg.PINV_RTOL!r})")
