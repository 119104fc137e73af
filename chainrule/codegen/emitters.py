"""One emitter per primitive: how an equation is written as Python calling the array
namespace `np`.

An emitter is `emit(ctx, *args, **params)`, where `args` are the operands already
written as Python expressions (names or literals) and `params` the equation's
parameters. It returns an expression string, or a list of statements that assign
`ctx.out` (for updates in place such as `x[i] = v`). `ctx.const(value)` names a
constant that cannot be written inline (large arrays, index arrays). Each entry may
also name the ufunc it calls, which lets the code generator pass `out=` to reuse a
dead buffer, and say whether its result may be (a view of) one of its operands.

Primitives without an entry are called through their implementation (a constant of
the generated module); `EMITTERS` covers every primitive of `chainrule.ops` and the
structured control flow (scan, while_loop, cond, checkpoint), whose sub-graphs become
functions of the module (`ctx.function`) called from a Python loop or branch.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import control
from ..core.primitive import impl_rules
from ..ops import contraction, elementwise, linalg, reductions, shape

NAMESPACE = "np"


@dataclass(frozen=True)
class Emitter:
    emit: Callable
    ufunc: str | None = None      # "np.tanh": accepts out=
    view: bool = False            # the result may share memory with an operand
    imports: str | None = None    # a module the code names, imported by the generated module


EMITTERS: dict = {}


def _register(prim, emit, ufunc=None, view=False, imports=None):
    EMITTERS[prim] = Emitter(emit, ufunc, view, imports)


def emitter_of(prim) -> Emitter | None:
    """The emitter of prim, or None. scipy.special's primitives, defined when a traced
    value first meets one (ops/special.py), get theirs once that has happened."""
    emitter = EMITTERS.get(prim)
    if emitter is None and not _special_registered:
        special = sys.modules.get("chainrule.ops.special")
        if special is not None:
            _register_special(special)
            emitter = EMITTERS.get(prim)
    return emitter


_special_registered = False     # scipy.special's emitters are in EMITTERS


def _register_special(special):
    global _special_registered
    _special_registered = True
    for name in (*special.UNARY, *special.BINARY):
        f = f"scipy.special.{name}"
        _register(elementwise.prims[name], lambda ctx, *xs, f=f: f"{f}({', '.join(xs)})", f,
                  imports="scipy.special")
    for prim, fn in special.FAMILY_FUNCTIONS.items():
        _register(prim, lambda ctx, x, order, fn=fn: (
            f"{NAMESPACE}.asarray(scipy.special.{fn}({order}, {x}), "
            f"{dtype_source(ctx.out_aval.dtype)})"), imports="scipy.special")


def dtype_source(dtype) -> str:
    dtype = np.dtype(dtype)
    return f"{NAMESPACE}.{dtype.name}" if dtype.name != "bool" else f"{NAMESPACE}.bool_"


def _axes(axes) -> str:
    axes = tuple(axes)
    return str(axes[0]) if len(axes) == 1 else repr(axes)


# --------------------------------------------------------------------------- elementwise

OPERATORS = {"add": "+", "subtract": "-", "multiply": "*", "true_divide": "/",
             "power": "**", "floor_divide": "//", "remainder": "%", "less": "<",
             "less_equal": "<=", "greater": ">", "greater_equal": ">=", "equal": "==",
             "not_equal": "!="}

for _name, _prim in elementwise.prims.items():
    if impl_rules[_prim] is not getattr(np, _name, None):
        continue        # not NumPy's (scipy.special's: see emitter_of)
    _ufunc = f"{NAMESPACE}.{getattr(np, _name).__name__}"
    if _name in OPERATORS:
        _register(_prim, lambda ctx, a, b, op=OPERATORS[_name]: f"{a} {op} {b}", _ufunc)
    elif _name == "negative":
        _register(_prim, lambda ctx, a: f"-{a}", _ufunc)
    else:
        _register(_prim, lambda ctx, *xs, f=_ufunc: f"{f}({', '.join(xs)})", _ufunc)

_register(elementwise.mul_zero_safe,
          lambda ctx, t, f: f"{NAMESPACE}.where({t} == 0, 0, {t} * {f})")
_register(elementwise.select, lambda ctx, c, x, y: f"{NAMESPACE}.where({c}, {x}, {y})")
_register(elementwise.convert,
          lambda ctx, x, dtype: f"{NAMESPACE}.asarray({x}).astype({dtype_source(dtype)})")
_register(elementwise.stop_gradient_p, lambda ctx, x: x, view=True)


# --------------------------------------------------------------------------- reductions

def _reduction(fn):
    def emit(ctx, x, axes):
        if len(axes) == ctx.in_avals[0].ndim:
            return f"{NAMESPACE}.{fn}({x})"
        return f"{NAMESPACE}.{fn}({x}, axis={_axes(axes)})"
    return emit


_register(reductions.reduce_sum_p, _reduction("sum"))
_register(reductions.reduce_max_p, _reduction("max"))
_register(reductions.reduce_min_p, _reduction("min"))
_register(reductions.cumsum_p, lambda ctx, x, axis: f"{NAMESPACE}.cumsum({x}, axis={axis})")
_register(reductions.argmax_p, lambda ctx, x, axis: f"{NAMESPACE}.argmax({x}, axis={axis})")
_register(reductions.argmin_p, lambda ctx, x, axis: f"{NAMESPACE}.argmin({x}, axis={axis})")
_register(reductions.argsort_p,
          lambda ctx, x, axis: f"{NAMESPACE}.argsort({x}, axis={axis}, kind='stable')")


# --------------------------------------------------------------------------- shapes

_register(shape.reshape_p, lambda ctx, x, shape: f"{NAMESPACE}.reshape({x}, {shape!r})",
          view=True)
_register(shape.transpose_p,
          lambda ctx, x, perm: f"{x}.T" if len(perm) == 2 and perm == (1, 0)
          else f"{NAMESPACE}.transpose({x}, {perm!r})", view=True)
_register(shape.broadcast_p,
          lambda ctx, x, shape: f"{NAMESPACE}.broadcast_to({x}, {shape!r})", view=True)
_register(shape.concatenate_p,
          lambda ctx, *xs, axis: f"{NAMESPACE}.concatenate([{', '.join(xs)}], axis={axis})")
_register(shape.zeros_like_p,
          lambda ctx, x, shape, dtype: f"{NAMESPACE}.zeros({shape!r}, {dtype_source(dtype)})")
_register(shape.take_along_p,
          lambda ctx, x, idx, axis: f"{NAMESPACE}.take_along_axis({x}, {idx}, axis={axis})")


def index_source(ctx, index) -> str:
    """The text inside x[...] for a static index; index arrays become constants."""
    return index.format(ctx.const) or "()"


def _getitem(ctx, x, index):
    return f"{x}[{index_source(ctx, index)}]"


_register(shape.getitem_p, _getitem, view=True)


def _scatter(ctx, x, v, index, keep):
    start = x if ctx.may_overwrite(0) else f"{x}.copy()"
    return [f"{ctx.out} = {start}", f"{ctx.out}[{index_source(ctx, index)}] = {v}"]


def _scatter_add(ctx, ct, index, shape):
    dtype = dtype_source(ctx.out_aval.dtype)
    zeros = f"{ctx.out} = {NAMESPACE}.zeros({shape!r}, {dtype})"
    if index.basic:
        return [zeros, f"{ctx.out}[{index_source(ctx, index)}] = {ct}"]
    return [zeros, f"{NAMESPACE}.add.at({ctx.out}, {ctx.const(index.value)}, {ct})"]


def _put_along_add(ctx, ct, idx, axis, shape):
    n = len(shape)
    grids = [f"{NAMESPACE}.arange({d}).reshape({tuple(d if k == i else 1 for k in range(n))!r})"
             for i, d in enumerate(ctx.in_avals[1].shape)]
    grids[axis] = idx
    dtype = dtype_source(ctx.out_aval.dtype)
    return [f"{ctx.out} = {NAMESPACE}.zeros({shape!r}, {dtype})",
            f"{NAMESPACE}.add.at({ctx.out}, ({', '.join(grids)},), {ct})"]


_register(shape.scatter_p, _scatter)
_register(shape.scatter_add_p, _scatter_add)
_register(shape.put_along_add_p, _put_along_add)


# --------------------------------------------------------------------------- contraction

def _matmul_operand(x, idx, free, summed):
    """x written with its indices in (free, summed) order, for the left operand."""
    if len(idx) == 1:
        return x
    return x if idx == free + summed else f"{x}.T"


def _contract(ctx, a, b, spec):
    """`a @ b` (with `.T` where needed) for matrix and vector products, einsum for the
    rest."""
    a_idx, b_idx, out_idx = spec
    summed = [i for i in a_idx if i in b_idx and i not in out_idx]
    batch = [i for i in out_idx if i in a_idx and i in b_idx]
    if len(summed) == 1 and not batch and len(a_idx) <= 2 and len(b_idx) <= 2:
        s = summed[0]
        fa, fb = a_idx.replace(s, ""), b_idx.replace(s, "")
        for (l, li, lf), (r, ri, rf) in (((a, a_idx, fa), (b, b_idx, fb)),
                                         ((b, b_idx, fb), (a, a_idx, fa))):
            if out_idx == lf + rf:
                left = _matmul_operand(l, li, lf, s)
                right = r if len(ri) == 1 or ri == s + rf else f"{r}.T"
                return f"{left} @ {right}"
    if not summed and not batch and len(a_idx) + len(b_idx) == len(out_idx) and \
            out_idx == a_idx + b_idx:
        return f"{NAMESPACE}.multiply.outer({a}, {b})"
    flops = int(np.prod(ctx.in_avals[0].shape, dtype=np.int64)) * int(
        np.prod([d for i, d in zip(b_idx, ctx.in_avals[1].shape) if i not in a_idx],
                dtype=np.int64))
    optimize = ", optimize=True" if flops > 1 << 16 else ""
    return f"{NAMESPACE}.einsum('{a_idx},{b_idx}->{out_idx}', {a}, {b}{optimize})"


_register(contraction.contract_p, _contract)


# --------------------------------------------------------------------------- linear algebra

_register(linalg.solve_p, lambda ctx, a, b: f"{NAMESPACE}.linalg.solve({a}, {b})")
_register(linalg.slogdet_p, lambda ctx, a: f"{NAMESPACE}.linalg.slogdet({a})")
_register(linalg.det_p, lambda ctx, a: f"{NAMESPACE}.linalg.det({a})")
_register(linalg.cholesky_p, lambda ctx, a: f"{NAMESPACE}.linalg.cholesky({a})")
_register(linalg.qr_p, lambda ctx, a: f"{NAMESPACE}.linalg.qr({a})")
_register(linalg.eigh_p, lambda ctx, a, UPLO: f"{NAMESPACE}.linalg.eigh({a}, {UPLO!r})")
_register(linalg.svd_p, lambda ctx, a, hermitian:
          f"{NAMESPACE}.linalg.svd({a}, full_matrices=False, hermitian={hermitian})")
_register(linalg.norm2_p,
          lambda ctx, x, axes: f"{NAMESPACE}.sqrt({_reduction('sum')(ctx, f'{x} * {x}', axes)})")


# --------------------------------------------------------------------------- control flow

def _targets(names) -> str:
    return ", ".join(names) + ("," if len(names) == 1 else "")


def _carries(ctx, n) -> list:
    """Names for the loop-carried values: the outputs, fresh where an output is unused
    (the loop still needs it)."""
    return [o if o != "_" else ctx.fresh() for o in ctx.outs[:n]]


def _scan(ctx, *args, body, num_consts, num_carry, length, reverse):
    fn = ctx.function(body, "scan_body")
    consts = list(args[:num_consts])
    init, xs = args[num_consts:num_consts + num_carry], args[num_consts + num_carry:]
    carry = _carries(ctx, num_carry)
    ys = ctx.outs[num_carry:]
    y_avals = [v.aval for v in body.outvars[num_carry:]]
    step = [ctx.fresh() if y != "_" else "_" for y in ys]
    i = ctx.fresh()
    lines = [f"{c} = {v}" for c, v in zip(carry, init)]
    lines += [f"{y} = {NAMESPACE}.empty({(length,) + av.shape!r}, {dtype_source(av.dtype)})"
              for y, av in zip(ys, y_avals) if y != "_"]
    order = f"range({length - 1}, -1, -1)" if reverse else f"range({length})"
    call = f"{fn}({', '.join(consts + carry + [f'{x}[{i}]' for x in xs])})"
    lines += [f"for {i} in {order}:", f"    {_targets(carry + step) or '_'} = {call}"]
    lines += [f"    {y}[{i}] = {s}" for y, s in zip(ys, step) if y != "_"]
    return lines


def _while(ctx, *args, cond, body, num_cond_consts, num_body_consts):
    test = ctx.function(cond, "while_cond")
    step = ctx.function(body, "while_body")
    cc = list(args[:num_cond_consts])
    bc = list(args[num_cond_consts:num_cond_consts + num_body_consts])
    init = args[num_cond_consts + num_body_consts:]
    carry = _carries(ctx, len(init))
    return [f"{_targets(carry)} = {_targets(list(init))}",
            f"while {test}({', '.join(cc + carry)})[0]:",
            f"    {_targets(carry)} = {step}({', '.join(bc + carry)})"]


def _cond(ctx, pred, *operands, branches):
    false_fn = ctx.function(branches[0], "if_false")
    true_fn = ctx.function(branches[1], "if_true")
    return f"({true_fn} if {pred} else {false_fn})({', '.join(operands)})"


def _checkpoint(ctx, *args, graph):
    return f"{ctx.function(graph, 'checkpointed')}({', '.join(args)})"


_register(control.scan_p, _scan, view=True)
_register(control.while_p, _while, view=True)
_register(control.cond_p, _cond, view=True)
_register(control.checkpoint_p, _checkpoint, view=True)

# The primitives that derivative rules and custom rules make (while_loop's derivative
# loops, custom_jvp/custom_vjp calls) have their emitters beside, in `derived`.
from . import derived  # noqa: E402,F401
