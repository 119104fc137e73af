"""Elementwise primitives: NumPy's ufuncs with full broadcasting, `where`, `astype`.

Each entry of the tables below is one primitive: the ufunc that implements it and its
partial derivatives written with NumPy calls (which trace), so that every rule can be
differentiated again. Binary primitives broadcast like NumPy; their transpose rules sum
cotangents back to each operand's shape.

Nonsmooth points (one convention for all): a tie between the arguments of
maximum/minimum/fmax/fmin splits the derivative equally between them (clip, built on
them, therefore gives 1/2 at its bounds); abs and sign give slope 0 at 0; floor, ceil,
round, trunc, rint and sign are piecewise constant (derivative 0). Each of these is an
element of the Clarke Jacobian. Where a partial derivative is infinite at a point where
the function is finite (sqrt, cbrt, arcsin, arccos, x**p at 0), a zero tangent or
cotangent stays exactly zero (0 * inf = 0), so `np.where(x > 0, np.sqrt(x), 0)` has a
finite gradient at x = 0 in both modes (the trap of JAX issue #1052). The infinite
factors are written as constant powers, whose own partials are zero-safe too, so this
holds at every order.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..core.batch_axes import broadcasting_rule
from ..core.ir import Aval, aval_of
from ..core.primitive import (DiagonalBatch, Zero, batch_rules, diagonal_rules, is_undefined,
                              primitive)
from ..core.trace import handlers
from .common import (as_operand, broadcast_shapes, implements, promote, sum_to_shape,
                     ufunc_dtype)

LN2, LN10 = np.log(2.0), np.log(10.0)


# --------------------------------------------------------------------------- helpers

def _broadcast_tangent(t, shape):
    return t if t.shape == tuple(shape) else np.broadcast_to(t, shape)


def _elementwise_jvp(partials):
    """A JVP rule from one partial per argument: partial(t, *primals, out) gives that
    argument's contribution to the output tangent (None: not differentiable in it)."""
    def jvp(primals, tangents, outs, **params):
        out = outs[0]
        total = None
        for partial, t in zip(partials, tangents):
            if partial is None or isinstance(t, Zero):
                continue
            c = partial(t, *primals, out)
            total = c if total is None else total + c
        if total is None:
            return [Zero(aval_of(out))]
        return [_broadcast_tangent(total, out.shape)]
    return jvp


def _zero_jvp(primals, tangents, outs, **params):
    return [Zero(aval_of(outs[0]))]


def _shape_of(ufunc):
    if ufunc.nin == 1:
        return lambda a: _elementwise_aval(ufunc, a.shape, a.dtype)
    return lambda a, b: _elementwise_aval(ufunc, a.shape, a.dtype, b.shape, b.dtype)


@lru_cache(maxsize=4096)
def _elementwise_aval(ufunc, *shapes_and_dtypes) -> Aval:
    """The output aval of ufunc on inputs given as shape, dtype, shape, dtype, ...
    (cached: tracing meets the same few signatures over and over)."""
    return Aval(broadcast_shapes(*shapes_and_dtypes[::2]),
                ufunc_dtype(ufunc, *shapes_and_dtypes[1::2]))


def _safe_mul(t, factor):
    """t * factor, exactly zero where t is zero even if factor is infinite."""
    return mul_zero_safe.bind(t, factor)


def _impl_safe_mul(t, factor):
    with np.errstate(invalid="ignore"):
        return np.where(t == 0, np.zeros((), np.result_type(t, factor)), t * factor)


mul_zero_safe = primitive(
    "mul_zero_safe", _impl_safe_mul, _shape_of(np.multiply),
    jvp=_elementwise_jvp([lambda t, a, f, out: _safe_mul(t, f),
                          lambda t, a, f, out: _safe_mul(a, t)]),
    transpose=lambda cts, a, b: [
        sum_to_shape(_safe_mul(cts[0], b), a.aval.shape) if is_undefined(a) else None,
        sum_to_shape(_safe_mul(cts[0], a), b.aval.shape) if is_undefined(b) else None])


# --------------------------------------------------------------------------- unary

def _power_partial(t, x, p):
    """t * p x^(p-1); finite for constant p >= 1, else zero-safe (x^(p-1) may be inf)."""
    if isinstance(p, (np.ndarray, np.generic)) and p.ndim == 0 and p >= 1:
        return t * (p * x ** (p - 1) if p != 2 else 2 * x)
    return _safe_mul(t, np.where(p == 0, 0.0, p * np.power(x, p - 1)))


def _tie_weight(x, y):
    """1 where x wins, 1/2 on ties, 0 where y wins (maximum/minimum convention)."""
    return (x > y) + 0.5 * (x == y)


UNARY = {
    # name: (ufunc, partial(t, x, y) with y = f(x); None = piecewise constant)
    "negative": (np.negative, lambda t, x, y: -t),
    "sin": (np.sin, lambda t, x, y: t * np.cos(x)),
    "cos": (np.cos, lambda t, x, y: t * -np.sin(x)),
    "tan": (np.tan, lambda t, x, y: t * (1 + y * y)),
    "arcsin": (np.arcsin, lambda t, x, y: _safe_mul(t, (1 - x * x) ** -0.5)),
    "arccos": (np.arccos, lambda t, x, y: _safe_mul(t, -(1 - x * x) ** -0.5)),
    "arctan": (np.arctan, lambda t, x, y: t / (1 + x * x)),
    "sinh": (np.sinh, lambda t, x, y: t * np.cosh(x)),
    "cosh": (np.cosh, lambda t, x, y: t * np.sinh(x)),
    "tanh": (np.tanh, lambda t, x, y: t * (1 - y * y)),
    "arcsinh": (np.arcsinh, lambda t, x, y: t / np.sqrt(x * x + 1)),
    "arccosh": (np.arccosh, lambda t, x, y: _safe_mul(t, (x * x - 1) ** -0.5)),
    "arctanh": (np.arctanh, lambda t, x, y: t / (1 - x * x)),
    "exp": (np.exp, lambda t, x, y: t * y),
    "expm1": (np.expm1, lambda t, x, y: t * (y + 1)),
    "exp2": (np.exp2, lambda t, x, y: t * (y * LN2)),
    "log": (np.log, lambda t, x, y: t / x),
    "log1p": (np.log1p, lambda t, x, y: t / (1 + x)),
    "log2": (np.log2, lambda t, x, y: t / (x * LN2)),
    "log10": (np.log10, lambda t, x, y: t / (x * LN10)),
    "sqrt": (np.sqrt, lambda t, x, y: _safe_mul(t, 0.5 * y ** -1.0)),
    "cbrt": (np.cbrt, lambda t, x, y: _safe_mul(t, y ** -2.0 / 3)),
    "square": (np.square, lambda t, x, y: t * (2 * x)),
    "reciprocal": (np.reciprocal, lambda t, x, y: t * -(y * y)),
    "abs": (np.abs, lambda t, x, y: t * np.sign(x)),
    "sign": (np.sign, None),
    "floor": (np.floor, None),
    "ceil": (np.ceil, None),
    "rint": (np.rint, None),
    "trunc": (np.trunc, None),
}

BINARY = {
    # name: (ufunc, partial wrt first, partial wrt second), partial(t, x, y, out)
    "multiply": (np.multiply, lambda t, x, y, o: t * y, lambda t, x, y, o: x * t),
    "true_divide": (np.true_divide, lambda t, x, y, o: t / y,
                    lambda t, x, y, o: -t * (o / y)),
    "power": (np.power, lambda t, x, y, o: _power_partial(t, x, y),
              lambda t, x, y, o: t * np.where(x > 0, np.log(np.where(x > 0, x, 1.0)) * o,
                                              0.0)),
    "maximum": (np.maximum, lambda t, x, y, o: t * _tie_weight(x, y),
                lambda t, x, y, o: t * _tie_weight(y, x)),
    "minimum": (np.minimum, lambda t, x, y, o: t * _tie_weight(y, x),
                lambda t, x, y, o: t * _tie_weight(x, y)),
    "arctan2": (np.arctan2,
                lambda t, x, y, o: t * (y / np.where(x * x + y * y == 0, 1.0, x * x + y * y)),
                lambda t, x, y, o: -t * (x / np.where(x * x + y * y == 0, 1.0, x * x + y * y))),
    "hypot": (np.hypot, lambda t, x, y, o: t * (x / np.where(o == 0, 1.0, o)),
              lambda t, x, y, o: t * (y / np.where(o == 0, 1.0, o))),
    "logaddexp": (np.logaddexp, lambda t, x, y, o: t * np.exp(x - o),
                  lambda t, x, y, o: t * np.exp(y - o)),
    "logaddexp2": (np.logaddexp2, lambda t, x, y, o: t * np.exp2(x - o),
                   lambda t, x, y, o: t * np.exp2(y - o)),
    "remainder": (np.remainder, lambda t, x, y, o: t,
                  lambda t, x, y, o: -t * np.floor_divide(x, y)),
    "floor_divide": (np.floor_divide, None, None),
}

NONDIFFERENTIABLE = [np.less, np.less_equal, np.greater, np.greater_equal, np.equal,
                     np.not_equal, np.logical_and, np.logical_or, np.logical_xor,
                     np.logical_not, np.isnan, np.isinf, np.isfinite, np.signbit,
                     np.invert, np.bitwise_and, np.bitwise_or, np.bitwise_xor]

# Transposes of the primitives that are linear in some arguments.
LINEAR_TRANSPOSES = {
    "negative": lambda cts, x: [-cts[0]],
    "add": lambda cts, x, y: [
        sum_to_shape(cts[0], x.aval.shape) if is_undefined(x) else None,
        sum_to_shape(cts[0], y.aval.shape) if is_undefined(y) else None],
    "subtract": lambda cts, x, y: [
        sum_to_shape(cts[0], x.aval.shape) if is_undefined(x) else None,
        -sum_to_shape(cts[0], y.aval.shape) if is_undefined(y) else None],
    "multiply": lambda cts, x, y: [
        sum_to_shape(cts[0] * y, x.aval.shape) if is_undefined(x) else None,
        sum_to_shape(x * cts[0], y.aval.shape) if is_undefined(y) else None],
    "true_divide": lambda cts, x, y: [sum_to_shape(cts[0] / y, x.aval.shape), None],
}

prims: dict = {}


def _unary_jvp(partial):
    """The JVP rule of a unary elementwise primitive (its tangent has the output's shape)."""
    def jvp(primals, tangents, outs):
        if type(tangents[0]) is Zero:
            return [Zero(aval_of(outs[0]))]
        return [partial(tangents[0], primals[0], outs[0])]
    return jvp


def _unary(name, ufunc, partial):
    jvp = _zero_jvp if partial is None else _unary_jvp(partial)
    p = primitive(name, ufunc, _shape_of(ufunc), jvp=jvp,
                  transpose=LINEAR_TRANSPOSES.get(name))
    prims[name] = p
    implements(ufunc)(lambda x: p.bind(as_operand(x)))


def _sum_jvp(sign):
    """add / subtract: the output tangent is t0 + t1 or t0 - t1, one linear operation."""
    def jvp(primals, tangents, outs):
        t0, t1 = tangents
        if type(t1) is Zero:
            if type(t0) is Zero:
                return [Zero(aval_of(outs[0]))]
            total = t0
        elif type(t0) is Zero:
            total = t1 if sign > 0 else -t1
        else:
            total = t0 + t1 if sign > 0 else t0 - t1
        return [_broadcast_tangent(total, outs[0].shape)]
    return jvp


def _binary(name, ufunc, jvp):
    p = primitive(name, ufunc, _shape_of(ufunc), jvp=jvp,
                  transpose=LINEAR_TRANSPOSES.get(name))
    prims[name] = p
    def handler(x, y):
        x, y = promote(x, y)
        broadcast_shapes(x.shape, y.shape)
        return p.bind(x, y)
    implements(ufunc)(handler)
    implements((ufunc, "outer"))(
        lambda x, y: handler(np.reshape(x, np.shape(x) + (1,) * np.ndim(y)), y))


for _name, (_ufunc, _partial) in UNARY.items():
    _unary(_name, _ufunc, _partial)
_binary("add", np.add, _sum_jvp(+1))
_binary("subtract", np.subtract, _sum_jvp(-1))
for _name, (_ufunc, _d0, _d1) in BINARY.items():
    _binary(_name, _ufunc, _zero_jvp if _d0 is None else _elementwise_jvp([_d0, _d1]))
for _ufunc in NONDIFFERENTIABLE:
    if _ufunc.nin == 1:
        _unary(_ufunc.__name__, _ufunc, None)
    else:
        _binary(_ufunc.__name__, _ufunc, _zero_jvp)

_broadcasting_power = handlers[np.power]      # what _binary registered


@implements(np.power)
def power(x, y):
    """x ** 2 is `square`, as in NumPy's own fast path for arrays (the same values), whose
    derivative rules need no value of the exponent."""
    x, y = promote(x, y)
    if isinstance(y, np.generic) and y == 2 and ufunc_dtype(np.power, x.dtype, y.dtype) == x.dtype:
        return prims["square"].bind(x)
    return _broadcasting_power(x, y)


implements(np.fmax)(lambda x, y: prims["maximum"].bind(*promote(x, y)))
implements(np.fmin)(lambda x, y: prims["minimum"].bind(*promote(x, y)))
implements(np.fmod)(lambda x, y: x - np.trunc(x / y) * y)
implements(np.positive)(lambda x: x)
implements(np.conjugate)(lambda x: x)
implements(np.deg2rad, np.radians)(lambda x: x * (np.pi / 180))
implements(np.rad2deg, np.degrees)(lambda x: x * (180 / np.pi))


@implements(np.round, np.around)
def round_(x, decimals=0):
    if as_operand(x).dtype.kind in "iu" and decimals >= 0:
        return x
    if decimals == 0:
        return prims["rint"].bind(as_operand(x))
    scale = 10.0 ** decimals
    return prims["rint"].bind(x * scale) / scale


@implements(np.clip)
def clip(x, a_min=None, a_max=None, out=None, *, min=None, max=None):
    a_min = min if a_min is None else a_min
    a_max = max if a_max is None else a_max
    if a_min is not None:
        x = np.maximum(x, a_min)
    if a_max is not None:
        x = np.minimum(x, a_max)
    return x


# --------------------------------------------------------------------------- where

def _select_shape(c, x, y):
    return Aval(broadcast_shapes(c.shape, x.shape, y.shape), np.result_type(x.dtype, y.dtype))


def _select_jvp(primals, tangents, outs):
    c, x, y = primals
    _, tx, ty = tangents
    out = outs[0]
    tx = np.zeros_like(out) if isinstance(tx, Zero) else tx
    ty = np.zeros_like(out) if isinstance(ty, Zero) else ty
    return [select.bind(c, tx, ty)]


def _select_transpose(cts, c, x, y):
    ct = cts[0]
    zero = np.zeros((), ct.dtype)
    return [None,
            sum_to_shape(select.bind(c, ct, zero), x.aval.shape) if is_undefined(x) else None,
            sum_to_shape(select.bind(c, zero, ct), y.aval.shape) if is_undefined(y) else None]


select = primitive("select", np.where, _select_shape, jvp=_select_jvp,
                   transpose=_select_transpose)


@implements(np.where)
def where(condition, x=None, y=None):
    if x is None and y is None:
        from ..core.trace import concrete
        return np.nonzero(concrete(condition))
    x, y = promote(x, y)
    condition = as_operand(condition)
    broadcast_shapes(np.shape(condition), np.shape(x), np.shape(y))
    return select.bind(condition, x, y)


# --------------------------------------------------------------------------- dtypes

def _convert_jvp(primals, tangents, outs, dtype):
    if not np.issubdtype(dtype, np.inexact) or not aval_of(primals[0]).is_float:
        return [Zero(aval_of(outs[0]))]
    return [convert.bind(tangents[0], dtype=dtype)]


convert = primitive(
    "convert", lambda x, dtype: np.asarray(x).astype(dtype),
    lambda x, dtype: Aval(x.shape, dtype), jvp=_convert_jvp,
    transpose=lambda cts, x, dtype: [convert.bind(cts[0], dtype=x.aval.dtype)])


@implements("astype")
def astype(x, dtype):
    dtype = np.dtype(dtype)
    return x if x.dtype == dtype else convert.bind(x, dtype=dtype)


stop_gradient_p = primitive("stop_gradient", lambda x: x, lambda x: x, jvp=_zero_jvp)


# --------------------------------------------------------------------------- batching

# Every primitive of this module broadcasts like NumPy: one batch rule for all.
for _prim in [*prims.values(), mul_zero_safe, select, convert, stop_gradient_p]:
    batch_rules[_prim] = broadcasting_rule(_prim)


def _diagonal_scaling(prim, linear_in):
    """A DiagonalBatch (at a position in `linear_in`) scaled by an unbatched array that
    does not broadcast it stays diagonal: prim applied to its d."""
    def rule(args, dims):
        for i in linear_in:
            d, other = args[i], args[1 - i]
            if type(d) is DiagonalBatch and dims[1 - i] is None and \
                    broadcast_shapes(d.d.shape, np.shape(other)) == d.d.shape:
                return DiagonalBatch(prim.bind(*((d.d, other) if i == 0 else (other, d.d))))
        return None
    return rule


def _diagonal_sum(prim):
    """add / subtract of two DiagonalBatch of one shape."""
    def rule(args, dims):
        a, b = args
        if type(a) is DiagonalBatch and type(b) is DiagonalBatch and a.d.shape == b.d.shape:
            return DiagonalBatch(prim.bind(a.d, b.d))
        return None
    return rule


diagonal_rules[prims["negative"]] = lambda args, dims: DiagonalBatch(-args[0].d)
for _name in ("add", "subtract"):
    diagonal_rules[prims[_name]] = _diagonal_sum(prims[_name])
for _prim, _linear_in in ((prims["multiply"], (0, 1)), (mul_zero_safe, (0, 1)),
                          (prims["true_divide"], (0,))):
    diagonal_rules[_prim] = _diagonal_scaling(_prim, _linear_in)
