"""The spec table: one entry per supported NumPy function, each run over random shapes,
broadcasting patterns and parameters (axis, keepdims, ...) drawn by hypothesis, float64.

For every entry and draw:
- the traced result equals NumPy's own result on the same arrays;
- `check_grads` agrees with finite differences at orders 1 and 2, forward and reverse;
- the traced graph, its reverse-mode graph and an abstract (shapes-only) trace verify,
  and the abstract trace predicts the shapes and dtypes NumPy produces.

Inputs keep away from the points where a function is not differentiable (ties of
max/min/sort, integers for floor/round, 0 for abs/sign, the bounds of clip, ...): the
conventions at those points are tested separately in test_ops_nonsmooth.py.
A coverage test checks that every differentiable primitive of chainrule.ops is exercised
by the table (primitives of other packages, e.g. control flow and custom rules, are tested
by their own suites); another checks that integer and boolean values flow through.
"""
from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import scipy.special as sc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chainrule as cr
import chainrule.ops
from chainrule.core.ir import Aval
from chainrule.core.primitive import Primitive, jvp_rules
from chainrule.core.trace import trace_flat
from chainrule.test_util import check_grads


# --------------------------------------------------------------------------- value domains

def real(rng, shape):
    return rng.standard_normal(shape)


def positive(rng, shape):
    return 0.5 + np.abs(rng.standard_normal(shape))


def nonzero(rng, shape):
    z = rng.standard_normal(shape)
    return np.where(z < 0, -1.0, 1.0) * (0.3 + np.abs(z))


def inside_unit(rng, shape):
    return rng.uniform(-0.8, 0.8, shape)


def above_one(rng, shape):
    return 1.2 + np.abs(rng.standard_normal(shape))


def moderate(rng, shape):
    return rng.uniform(-1.2, 1.2, shape)


def in_unit_interval(rng, shape):
    return rng.uniform(0.1, 0.9, shape)


def negative_off_integers(rng, shape):
    """Negative values at least 0.2 from every integer (the poles of gammaln, digamma)."""
    return -np.floor(3 * rng.uniform(size=shape)) - rng.uniform(0.2, 0.8, shape)


def some_negative(rng, shape):
    """Positive, except some entries that are negative (never the first of a row)."""
    x = positive(rng, shape)
    flip = rng.random(shape) < 0.3
    if len(shape):
        flip[..., 0] = False
    return np.where(flip, -x, x)


def distinct(offset=0.0):
    """Values at least 0.25 apart from each other and from the values of another
    `distinct` domain with an offset of 0.125 (no ties within or across arrays)."""
    def domain(rng, shape):
        n = int(np.prod(shape, dtype=int))
        grid = rng.permutation(n) - n // 2 + rng.uniform(-0.02, 0.02, n)
        return (0.25 * grid + offset).reshape(shape)
    return domain


def off_integers(rng, shape):
    """At least 0.2 away from every integer (and every half-integer)."""
    return rng.integers(-3, 4, shape) + rng.choice([0.25, 0.75], shape) + \
        rng.uniform(-0.04, 0.04, shape)


def spd(x):
    return x @ np.swapaxes(x, -1, -2) + 2 * np.eye(x.shape[-1])


# --------------------------------------------------------------------------- drawing inputs

class Draw:
    """What an entry's generator uses to draw structure and values. Structure (ranks,
    sizes, axes, flags) comes from `choose(lo, hi)`; values from a NumPy generator."""

    def __init__(self, choose, rng):
        self.choose = choose
        self.rng = rng

    def int(self, lo, hi):
        return self.choose(lo, hi)

    def flag(self):
        return bool(self.choose(0, 1))

    def pick(self, options):
        return options[self.choose(0, len(options) - 1)]

    def shape(self, min_rank=0, max_rank=3, min_dim=1, max_dim=3):
        return tuple(self.int(min_dim, max_dim) for _ in range(self.int(min_rank, max_rank)))

    def broadcastable(self, shape):
        """A shape that broadcasts to `shape`: some leading axes dropped, some sizes 1."""
        kept = shape[self.int(0, len(shape)):] if shape else ()
        return tuple(1 if self.flag() else d for d in kept)

    def axis(self, ndim, allow_none=True, allow_tuple=True):
        """None, a (possibly negative) axis, or a tuple of distinct axes."""
        kinds = (["none"] if allow_none or ndim == 0 else []) + \
            (["int"] if ndim else []) + (["tuple"] if allow_tuple and ndim > 1 else [])
        kind = self.pick(kinds)
        if kind == "none":
            return None
        if kind == "int":
            return self.int(-ndim, ndim - 1)
        axes = [a for a in range(ndim) if self.flag()] or [0]
        return tuple(a - ndim if self.flag() else a for a in axes)

    def array(self, shape, domain=real):
        return np.asarray(domain(self.rng, shape), dtype=np.float64)


def hypothesis_draw(data):
    seed = data.draw(st.integers(0, 2 ** 32 - 1), label="seed")
    return Draw(lambda lo, hi: data.draw(st.integers(lo, hi)), np.random.default_rng(seed))


def fixed_draw(seed=0):
    rng = np.random.default_rng(seed)
    return Draw(lambda lo, hi: int(rng.integers(lo, hi + 1)), rng)


# --------------------------------------------------------------------------- the table

@dataclass
class Spec:
    name: str
    fn: Callable            # fn(*arrays, **params)
    gen: Callable           # gen(Draw) -> (arrays, params)
    abstract: bool = True   # traceable with shapes only (no value-dependent indexing)


def elementwise(*domains):
    """Arguments of one shape each broadcastable to a common shape."""
    def gen(d):
        shape = d.shape()
        return tuple(d.array(d.broadcastable(shape), dom) for dom in domains), {}
    return gen


def one(domain=real, **shape_kw):
    return lambda d: ((d.array(d.shape(**shape_kw), domain),), {})


def reduction(domain=real, ddof=False, keepdims=True):
    def gen(d):
        x = d.array(d.shape(min_rank=1, min_dim=2 if ddof else 1), domain)
        params = dict(axis=d.axis(x.ndim))
        if keepdims:
            params["keepdims"] = d.flag()
        if ddof:
            params["ddof"] = d.int(0, 1)
        return (x,), params
    return gen


def scan(domain=real):
    def gen(d):
        x = d.array(d.shape(min_rank=1), domain)
        return (x,), dict(axis=d.axis(x.ndim, allow_tuple=False))
    return gen


def matmul_operands(d):
    """Operands of np.matmul: 1-d or stacked, with broadcasting batch dimensions."""
    n, k, m = d.int(1, 3), d.int(1, 3), d.int(1, 3)
    batch = d.shape(max_rank=2)
    a = (k,) if d.int(0, 3) == 0 else d.broadcastable(batch) + (n, k)
    b = (k,) if d.int(0, 3) == 0 else d.broadcastable(batch) + (k, m)
    return (d.array(a), d.array(b)), {}


def dot_operands(d):
    k = d.int(1, 3)
    a = d.shape(max_rank=2) + (k,)
    b = (k,) if d.flag() else d.shape(max_rank=1) + (k, d.int(1, 3))
    if d.int(0, 3) == 0:
        a = ()
    return (d.array(a), d.array(b)), {}


def tensordot_operands(d):
    shared = d.shape(max_rank=2)
    a = d.shape(max_rank=2) + shared
    b = shared + d.shape(max_rank=2)
    if d.flag():
        return (d.array(a), d.array(b)), dict(axes=len(shared))
    a_axes = list(range(len(a) - len(shared), len(a)))
    b_axes = list(range(len(shared)))
    return (d.array(a), d.array(b)), dict(axes=(a_axes, b_axes))


def einsum_case(d):
    subscripts, shapes = d.pick([
        ("ij,jk->ik", [(2, 3), (3, 2)]),
        ("bij,bjk->bik", [(2, 2, 3), (2, 3, 1)]),
        ("i,i->", [(3,), (3,)]),
        ("ij->ji", [(2, 3)]),
        ("ii->i", [(3, 3)]),
        ("ii", [(3, 3)]),
        ("ij,ij->i", [(2, 3), (2, 3)]),
        ("...ij,...jk", [(2, 1, 3), (3, 2)]),
        ("ij,jk,kl->il", [(2, 3), (3, 2), (2, 2)]),
        ("i,j->ij", [(2,), (3,)]),
        ("iij->j", [(2, 2, 3)]),
        ("ij,kl->ijkl", [(1, 2), (2, 1)]),
    ])
    return tuple(d.array(s) for s in shapes), dict(subscripts=subscripts)


def square_stack(d, min_dim=1):
    n = d.int(min_dim, 3)
    return d.shape(max_rank=1) + (n, n)


def _axes_perm(d, ndim):
    perm = list(range(ndim))
    d.rng.shuffle(perm)
    return [p - ndim if d.flag() else p for p in perm]


def concat_case(d):
    shape = d.shape(min_rank=1)
    axis = d.int(-len(shape), len(shape) - 1)
    arrays = []
    for _ in range(d.int(1, 3)):
        s = list(shape)
        s[axis] = d.int(1, 3)
        arrays.append(d.array(tuple(s)))
    return tuple(arrays), dict(axis=axis)


def getitem_case(d):
    x = d.array(d.shape(min_rank=1, max_rank=3, min_dim=2))
    index = d.pick([
        lambda: (slice(None, None, -1),),
        lambda: (Ellipsis, 0),
        lambda: (slice(1, None), None),
        lambda: (np.array([1, 0, 1]),),
        lambda: (x[(0,) * (x.ndim - 1)] > 0,) if x.ndim == 1 else (Ellipsis, [0, -1]),
        lambda: (-1,),
    ])()
    return (x,), dict(index=index)


def setitem(x, v, index):
    y = x * 1.0
    y[index] = v
    return y


def setitem_case(d):
    x = d.array(d.shape(min_rank=1, min_dim=2))
    index, vshape = d.pick([
        ((0,), x.shape[1:]),
        ((slice(None, None, 2),), (1,) + x.shape[1:]),
        ((np.array([1, 1, 0]),), (3,) + x.shape[1:]),
        ((Ellipsis, -1), ()),
    ])
    return (x, d.array(vshape)), dict(index=index)


def sort_case(d):
    x = d.array(d.shape(min_rank=1), distinct())
    return (x,), dict(axis=d.pick([None, -1, 0]))


def take_case(d):
    x = d.array(d.shape(min_rank=1))
    axis = d.pick([None] + list(range(-x.ndim, x.ndim)))
    n = x.size if axis is None else x.shape[axis]
    return (x,), dict(indices=d.rng.integers(-n, n, d.shape(max_rank=2)), axis=axis)


def take_along_case(d):
    x = d.array(d.shape(min_rank=1), distinct())
    return (x,), dict(axis=d.int(-x.ndim, x.ndim - 1))


def pad_case(d):
    x = d.array(d.shape(min_rank=1, min_dim=2))
    widths = tuple((d.int(0, 2), d.int(0, 2)) for _ in range(x.ndim))
    mode = d.pick(["constant", "constant_value", "edge", "reflect", "wrap"])
    if mode == "constant_value":
        return (x,), dict(pad_width=widths, mode="constant", constant_values=1.5)
    return (x,), dict(pad_width=widths, mode=mode)


def split_case(d):
    x = d.array(d.shape(min_rank=1, min_dim=2))
    axis = d.int(-x.ndim, x.ndim - 1)
    n = x.shape[axis]
    sections = d.pick([n, [1], [1, n - 1]]) if n > 1 else 1
    return (x,), dict(indices_or_sections=sections, axis=axis)


def mod_case(d):
    shape = d.shape()
    y = d.array(shape, positive)
    x = y * (d.rng.integers(-3, 3, shape) + d.rng.uniform(0.3, 0.7, shape))
    return (x, y), {}


def norm_case(d):
    x = d.array(d.shape(min_rank=1, max_rank=3, min_dim=2), distinct())
    if x.ndim == 1 or d.flag():
        axis = d.int(-x.ndim, x.ndim - 1)
        ord_ = d.pick([None, 1, 2, 3, np.inf, -np.inf])
    else:
        axis = tuple(_axes_perm(d, x.ndim)[:2])
        ord_ = d.pick([None, "fro", "nuc", 1, -1, 2, -2, np.inf, -np.inf])
    return (x,), dict(ord=ord_, axis=axis, keepdims=d.flag())


def softmax_stable(x, axis):
    z = np.exp(x - cr.stop_gradient(np.max(x, axis=axis, keepdims=True)))
    return z / np.sum(z, axis=axis, keepdims=True)


def logsumexp(x, axis):
    m = np.max(x, axis=axis, keepdims=True)
    return np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m


def masks_and_comparisons(x, y):
    keep = np.logical_and(np.greater(x, y), ~np.isnan(x))
    keep = keep | np.logical_xor(x <= y, np.less_equal(x, 0)) | np.isinf(y)
    keep = keep & np.isfinite(x) & ~np.signbit(y * 0 + 1) & (x != y) & (np.equal(x, x))
    keep = np.bitwise_or(keep, np.bitwise_and(x >= 10, y >= 10)) ^ np.bitwise_xor(keep, keep)
    keep = np.logical_or(keep, np.logical_not(np.invert(x < 100)))
    return np.where(keep, x * y, x - y)


UNARY = {
    "negative": (np.negative, real), "positive": (np.positive, real),
    "abs": (np.abs, nonzero), "absolute": (np.absolute, nonzero), "sign": (np.sign, nonzero),
    "reciprocal": (np.reciprocal, nonzero), "square": (np.square, real),
    "sqrt": (np.sqrt, positive), "cbrt": (np.cbrt, nonzero), "exp": (np.exp, real),
    "expm1": (np.expm1, real), "exp2": (np.exp2, real), "log": (np.log, positive),
    "log1p": (np.log1p, positive), "log2": (np.log2, positive), "log10": (np.log10, positive),
    "sin": (np.sin, real), "cos": (np.cos, real), "tan": (np.tan, moderate),
    "arcsin": (np.arcsin, inside_unit), "arccos": (np.arccos, inside_unit),
    "arctan": (np.arctan, real), "sinh": (np.sinh, real), "cosh": (np.cosh, real),
    "tanh": (np.tanh, real), "arcsinh": (np.arcsinh, real), "arccosh": (np.arccosh, above_one),
    "arctanh": (np.arctanh, inside_unit), "floor": (np.floor, off_integers),
    "ceil": (np.ceil, off_integers), "rint": (np.rint, off_integers),
    "trunc": (np.trunc, off_integers), "round": (np.round, off_integers),
    "around": (np.around, off_integers), "deg2rad": (np.deg2rad, real),
    "radians": (np.radians, real), "rad2deg": (np.rad2deg, real),
    "degrees": (np.degrees, real), "conjugate": (np.conjugate, real),
}

BINARY = {
    "add": (np.add, real, real), "subtract": (np.subtract, real, real),
    "multiply": (np.multiply, real, real), "divide": (np.divide, real, nonzero),
    "true_divide": (np.true_divide, real, nonzero), "power": (np.power, positive, real),
    "arctan2": (np.arctan2, nonzero, nonzero), "hypot": (np.hypot, nonzero, nonzero),
    "maximum": (np.maximum, distinct(), distinct(0.125)),
    "minimum": (np.minimum, distinct(), distinct(0.125)),
    "fmax": (np.fmax, distinct(), distinct(0.125)),
    "fmin": (np.fmin, distinct(), distinct(0.125)),
    "logaddexp": (np.logaddexp, real, real), "logaddexp2": (np.logaddexp2, real, real),
}

# scipy.special's ufuncs (registered when a tracer first meets one)
SPECIAL = {
    "erf": (sc.erf, real), "erfc": (sc.erfc, real), "erfinv": (sc.erfinv, inside_unit),
    "ndtr": (sc.ndtr, real), "ndtri": (sc.ndtri, in_unit_interval),
    "log_ndtr": (sc.log_ndtr, real), "expit": (sc.expit, real),
    "log_expit": (sc.log_expit, real), "logit": (sc.logit, in_unit_interval),
    "entr": (sc.entr, positive), "gammaln": (sc.gammaln, positive),
    "gammaln at negative non-integers": (sc.gammaln, negative_off_integers),
    "digamma": (sc.digamma, positive),
    "digamma at negative non-integers": (sc.digamma, negative_off_integers),
    "gamma": (sc.gamma, positive), "gamma at negative non-integers":
        (sc.gamma, negative_off_integers), "rgamma": (sc.rgamma, positive),
    "erfcx": (sc.erfcx, real), "i0": (sc.i0, real), "i1": (sc.i1, real),
    "i0e": (sc.i0e, nonzero), "i1e": (sc.i1e, nonzero),
    "scipy.special's copies of NumPy ufuncs":
        (lambda x: sc.expm1(x) + sc.log1p(x) + sc.exp2(x) + sc.cbrt(x), positive),
}
SPECIAL_BINARY = {"xlogy": (sc.xlogy, real, positive), "xlog1py": (sc.xlog1py, real, positive),
                  "rel_entr": (sc.rel_entr, positive, positive),
                  "kl_div": (sc.kl_div, positive, positive),
                  "betaln": (sc.betaln, positive, positive)}

SPECS = [Spec(name, fn, one(domain)) for name, (fn, domain) in UNARY.items()] + \
        [Spec(f"scipy.special {name}", fn, one(domain)) for name, (fn, domain) in
         SPECIAL.items()] + \
        [Spec(f"scipy.special {name}", fn, elementwise(d0, d1)) for name, (fn, d0, d1) in
         SPECIAL_BINARY.items()] + \
        [Spec(name, fn, elementwise(d0, d1)) for name, (fn, d0, d1) in BINARY.items()] + [
    Spec("power with a constant exponent", lambda x: x ** 3 + np.power(x, 2.0) - x ** -1.0,
         one(nonzero)),
    Spec("python operators", lambda x, y: (x + 1) * (2 - y) / (3 + x * x) - (-x) ** 2 + +y,
         elementwise(real, real)),
    Spec("round with decimals", lambda x: np.round(x, 1), one(lambda r, s: off_integers(r, s) / 10)),
    Spec("remainder", np.remainder, mod_case),
    Spec("mod", np.mod, mod_case),
    Spec("fmod", np.fmod, mod_case),
    Spec("floor_divide", lambda x, y: np.floor_divide(x, y) * x, mod_case),
    Spec("clip", lambda x: np.clip(x, 0.0, 1.0) + x.clip(-1.0, None) + np.clip(x, max=2.0),
         one(off_integers)),
    Spec("where", lambda c, x, y: np.where(c > 0, x, y), elementwise(nonzero, real, real)),
    Spec("comparisons and masks", masks_and_comparisons, elementwise(distinct(), distinct(0.125))),
    # reductions
    Spec("sum", np.sum, reduction()),
    Spec("prod", np.prod, reduction()),
    Spec("mean", np.mean, reduction()),
    Spec("average with weights", lambda x, w: np.average(x, axis=-1, weights=w),
         lambda d: ((d.array(s := d.shape(min_rank=1)), d.array(s[-1:], positive)), {})),
    Spec("var", np.var, reduction(ddof=True)),
    Spec("std", np.std, reduction(distinct(), ddof=True)),
    Spec("max", np.max, reduction(distinct())),
    Spec("min", np.min, reduction(distinct())),
    Spec("amax", np.amax, reduction(distinct())),
    Spec("amin", np.amin, reduction(distinct())),
    Spec("ndarray methods", lambda x: x.sum(0) + x.mean(axis=0) * x.max(0) - x.min(0) +
         x.prod(0) + x.var(0) + x.std(0) + x.cumsum(0) + x.cumprod(0) + x.T.T[0],
         one(distinct(), min_rank=1)),
    Spec("cumsum", np.cumsum, scan()),
    Spec("cumprod", np.cumprod, scan()),
    Spec("logsumexp composition", logsumexp, lambda d: (
        (x := d.array(d.shape(min_rank=1), distinct()),), dict(axis=d.axis(x.ndim)))),
    Spec("softmax with stop_gradient", softmax_stable, lambda d: (
        (x := d.array(d.shape(min_rank=1), distinct()),), dict(axis=-1))),
    # contractions
    Spec("matmul", np.matmul, matmul_operands),
    Spec("@", lambda a, b: a @ b, matmul_operands),
    Spec("dot", np.dot, dot_operands),
    Spec("vdot", np.vdot, lambda d: ((d.array(s := d.shape()), d.array(s)), {})),
    Spec("inner", np.inner, lambda d: ((d.array(d.shape(max_rank=2) + (k := d.int(1, 3),)),
                                        d.array(d.shape(max_rank=2) + (k,))), {})),
    Spec("outer", np.outer, lambda d: ((d.array(d.shape()), d.array(d.shape())), {})),
    Spec("tensordot", np.tensordot, tensordot_operands),
    Spec("einsum", lambda *ops, subscripts: np.einsum(subscripts, *ops), einsum_case),
    Spec("trace", np.trace, lambda d: (
        (x := d.array(d.shape(min_rank=2)),),
        dict(offset=d.int(-1, 1), **d.pick([dict(axis1=0, axis2=1), dict(axis1=-1, axis2=0)])))),
    Spec("diag", np.diag, lambda d: ((d.array(d.shape(min_rank=1, max_rank=2)),),
                                     dict(k=d.int(-1, 1)))),
    Spec("diagonal", np.diagonal, lambda d: (
        (d.array(d.shape(min_rank=2)),), dict(offset=d.int(-1, 1), axis1=-1, axis2=0))),
    Spec("diagflat", np.diagflat, lambda d: ((d.array(d.shape()),), dict(k=d.int(-1, 1)))),
    # shapes
    Spec("reshape", lambda x, shape: np.reshape(x, shape) + x.reshape(shape),
         lambda d: ((x := d.array(d.shape()),), dict(shape=d.pick([(-1,), (1, -1, 1)])))),
    Spec("ravel", np.ravel, one()),
    Spec("transpose", np.transpose, lambda d: (
        (x := d.array(d.shape()),), dict(axes=d.pick([None, _axes_perm(d, x.ndim)])))),
    Spec("swapaxes", np.swapaxes, lambda d: (
        (x := d.array(d.shape(min_rank=1)),),
        dict(axis1=d.int(-x.ndim, x.ndim - 1), axis2=d.int(-x.ndim, x.ndim - 1)))),
    Spec("moveaxis", np.moveaxis, lambda d: (
        (x := d.array(d.shape(min_rank=2)),), dict(source=[0, -1], destination=[-1, -2]))),
    Spec("expand_dims", np.expand_dims, lambda d: (
        (x := d.array(d.shape()),), dict(axis=d.pick([0, -1, (0, -1)])))),
    Spec("squeeze", np.squeeze, lambda d: (
        (d.array(d.shape(min_dim=1, max_dim=2)),), {})),
    Spec("broadcast_to", lambda x, shape: np.broadcast_to(x, shape), lambda d: (
        (d.array(d.broadcastable(s := d.shape())),), dict(shape=s))),
    Spec("broadcast_arrays", lambda x, y: np.broadcast_arrays(x, y)[0] * 2 + 1,
         elementwise(real, real)),
    Spec("concatenate", lambda *xs, axis: np.concatenate(xs, axis), concat_case),
    Spec("concatenate axis=None", lambda x, y: np.concatenate([x, y], axis=None),
         lambda d: ((d.array(d.shape()), d.array(d.shape())), {})),
    Spec("stack", lambda x, y, axis: np.stack([x, y], axis), lambda d: (
        (d.array(s := d.shape()), d.array(s)), dict(axis=d.int(-len(s) - 1, len(s))))),
    Spec("hstack", lambda x, y: np.hstack([x, y]),
         lambda d: ((d.array(s := d.shape(min_rank=1)), d.array(s)), {})),
    Spec("vstack", lambda x, y: np.vstack([x, y]),
         lambda d: ((d.array(s := d.shape(max_rank=2)), d.array(s)), {})),
    Spec("column_stack", lambda x, y: np.column_stack([x, y]),
         lambda d: ((d.array(s := d.shape(min_rank=1, max_rank=2)), d.array(s)), {})),
    Spec("atleast_1d and atleast_2d", lambda x: np.atleast_2d(np.atleast_1d(x)), one()),
    Spec("split", lambda x, **kw: np.split(x, **kw)[-1], split_case),
    Spec("array_split", lambda x: np.array_split(x, 2)[0], one(min_rank=1, min_dim=2)),
    Spec("tile", np.tile, lambda d: ((d.array(d.shape()),), dict(reps=d.pick([2, (2, 1)])))),
    Spec("repeat", np.repeat, lambda d: (
        (x := d.array(d.shape(min_rank=1)),), dict(repeats=2, axis=d.pick([None, -1])))),
    Spec("flip", np.flip, lambda d: (
        (x := d.array(d.shape(min_rank=1)),), dict(axis=d.axis(x.ndim)))),
    Spec("fliplr and flipud", lambda x: np.fliplr(x) + np.flipud(x), one(min_rank=2)),
    Spec("roll", np.roll, lambda d: (
        (x := d.array(d.shape(min_rank=1)),),
        dict(shift=d.int(-2, 2), axis=d.pick([None, -1])))),
    Spec("rot90", np.rot90, lambda d: ((d.array(d.shape(min_rank=2)),), dict(k=d.int(-1, 2)))),
    Spec("pad", np.pad, pad_case),
    Spec("take", np.take, take_case),
    Spec("take with traced indices", lambda x: np.take(x, np.argsort(x), axis=0),
         one(distinct(), min_rank=1, max_rank=1)),
    Spec("take_along_axis", lambda x, axis: np.take_along_axis(
        x, np.argsort(x, axis=axis), axis), take_along_case),
    Spec("sort", np.sort, sort_case),
    Spec("triu and tril", lambda x: np.triu(x, 1) + 2 * np.tril(x), one(min_rank=2)),
    Spec("indexing", lambda x, index: x[index], getitem_case, abstract=False),
    Spec("indexed assignment", setitem, setitem_case),
    Spec("in-place arithmetic", lambda x, y: _inplace(x, y), lambda d: (
        (d.array(s := d.shape()), d.array(d.broadcastable(s), nonzero)), {})),
    Spec("copy", lambda x: np.copy(x) * x.copy(), one()),
    Spec("zeros_like, ones_like, full_like, empty_like", lambda x: np.zeros_like(x) + x *
         np.ones_like(x) + np.full_like(x, 2.5) * x + 0 * np.empty_like(x), one()),
    Spec("astype", lambda x: x.astype(np.longdouble).astype(np.float64) * x, one()),
    # linear algebra
    Spec("linalg.solve", lambda a, b: np.linalg.solve(spd(a), b), lambda d: (
        (d.array(s := square_stack(d)), d.array(d.pick([s[-1:], s[:-1] + (d.int(1, 2),)]))),
        {})),
    Spec("linalg.inv", lambda a: np.linalg.inv(spd(a)), lambda d: ((d.array(square_stack(d)),), {})),
    Spec("linalg.det", np.linalg.det, lambda d: ((d.array(square_stack(d), distinct()),), {})),
    Spec("linalg.slogdet", lambda a: np.linalg.slogdet(spd(a))[1],
         lambda d: ((d.array(square_stack(d)),), {})),
    Spec("linalg.cholesky", lambda a: np.linalg.cholesky(spd(a)),
         lambda d: ((d.array(square_stack(d)),), {})),
    Spec("linalg.qr", lambda a: tuple(np.linalg.qr(a)), lambda d: (
        (d.array(d.shape(max_rank=1) + (d.int(1, 3), d.int(1, 3)), distinct()),), {})),
    Spec("linalg.eigh", lambda a: _sign_fixed_eigh(a + np.swapaxes(a, -1, -2)),
         lambda d: ((d.array(square_stack(d), distinct()),), {})),
    Spec("linalg.svd", lambda a: _sign_fixed_svd(a), lambda d: (
        (d.array(d.shape(max_rank=1) + (d.int(1, 3), d.int(1, 3)), distinct()),), {})),
    Spec("linalg.norm", np.linalg.norm, norm_case),
    Spec("linalg.vector_norm", np.linalg.vector_norm, lambda d: (
        (x := d.array(d.shape(min_rank=1), nonzero),),
        dict(axis=d.axis(x.ndim), keepdims=d.flag(), ord=d.pick([2, 1, 3, np.inf])))),
    Spec("linalg.matrix_norm", np.linalg.matrix_norm, lambda d: (
        (d.array(d.shape(min_rank=2, min_dim=2), distinct()),),
        dict(keepdims=d.flag(), ord=d.pick(["fro", "nuc", 1, np.inf, 2])))),
    Spec("linalg.matrix_power", lambda a, n: np.linalg.matrix_power(spd(a), n), lambda d: (
        (d.array(square_stack(d)),), dict(n=d.int(-2, 3)))),
    Spec("linalg.multi_dot", lambda *xs: np.linalg.multi_dot(xs), lambda d: (
        (d.array((2, 3)), d.array((3, 1)), d.array((1, 2))), {})),
    Spec("linalg.eigvalsh and svdvals", lambda a: np.linalg.eigvalsh(a + np.swapaxes(a, -1, -2))
         + np.linalg.svdvals(a), lambda d: ((d.array(square_stack(d), distinct()),), {})),
    Spec("array-API names in linalg", lambda a, b: np.linalg.trace(np.linalg.matmul(
        a, np.linalg.matrix_transpose(b))) + np.sum(np.linalg.diagonal(a)) +
        np.sum(np.linalg.outer(a[0], b[0])) + np.sum(np.linalg.tensordot(a, b))
        + np.sum(np.linalg.vecdot(a, b)) + np.sum(np.vecdot(a, b)), lambda d: (
        (d.array(s := (d.int(1, 3), d.int(1, 3))), d.array(s)), {})),
    Spec("cross", lambda a, b: np.cross(a, b) + np.sum(np.linalg.cross(a, b)), lambda d: (
        (d.array(d.broadcastable(s := d.shape(max_rank=2)) + (3,)),
         d.array(d.broadcastable(s) + (3,))), {})),
    # composed functions
    Spec("fabs", np.fabs, one(nonzero)),
    Spec("float_power", np.float_power, elementwise(positive, real)),
    Spec("copysign", np.copysign, elementwise(nonzero, nonzero)),
    Spec("heaviside", lambda x, h: np.heaviside(x, h) * x, elementwise(nonzero, real)),
    Spec("sinc", np.sinc, one(lambda r, s: np.where(r.random(s) < 0.3, r.uniform(-1e-4, 1e-4, s),
                                                      off_integers(r, s)))),
    Spec("nan_to_num", lambda x: np.nan_to_num(_with_nans(x), posinf=3.0),
         one(off_integers)),
    Spec("select", lambda x: np.select([x > 1, x < 0], [x ** 2, np.sin(x)], 0.5 * x),
         one(off_integers)),
    Spec("diff", np.diff, lambda d: (
        (x := d.array(d.shape(min_rank=1, max_dim=4)),),
        dict(n=d.int(1, 2), axis=d.int(-x.ndim, x.ndim - 1),
             **d.pick([{}, dict(prepend=0.5), dict(append=x)])))),
    Spec("ptp", np.ptp, reduction(distinct())),
    Spec("kron", np.kron, lambda d: ((d.array(d.shape(max_rank=2)),
                                      d.array(d.shape(max_rank=2))), {})),
    Spec("trapezoid", np.trapezoid, lambda d: (
        (y := d.array(d.shape(min_rank=1, min_dim=2)),),
        d.pick([{}, dict(dx=0.5), dict(x=np.sort(d.array(y.shape[-1:])))]))),
    Spec("median", np.median, reduction(distinct())),
    Spec("quantile", np.quantile, lambda d: (
        (x := d.array(d.shape(min_rank=1), distinct()),),
        dict(q=d.pick([0.3, np.array([0.1, 0.75])]), axis=d.axis(x.ndim),
             keepdims=d.flag()))),
    Spec("percentile", np.percentile, lambda d: (
        (d.array(d.shape(min_rank=1), distinct()),), dict(q=35.0))),
    Spec("nansum, nanmean, nanprod", lambda x: np.nansum(_nans(x)) +
         np.nanmean(_nans(x), axis=-1) * np.nanprod(_nans(x), axis=-1),
         one(some_negative, min_rank=1)),
    Spec("nanmax, nanmin", lambda x: np.nanmax(_nans(x), axis=-1) - np.nanmin(_nans(x), -1),
         one(lambda r, s: np.where(some_negative(r, s) < 0, -1.0, distinct(2.0)(r, s)),
             min_rank=1)),
    Spec("nonzero, argwhere, flatnonzero", lambda x: x[np.nonzero(x > 0)] +
         np.take(x, np.flatnonzero(x > 0)) * x[tuple(np.argwhere(x > 0).T)],
         one(nonzero, min_rank=1), abstract=False),
    Spec("interp", lambda x, fp: np.interp(x, np.array([-1.0, 0.0, 0.5, 2.0]), fp),
         lambda d: ((d.array(d.shape(), off_integers), d.array((4,))), {}), abstract=False),
    Spec("reductions with where and initial", lambda x: np.sum(x, where=x > 0) +
         np.max(x, axis=-1, where=x < 1, initial=-5.0) * np.prod(x, where=x > 0, initial=2.0)
         + np.mean(x, axis=-1, where=np.arange(x.shape[-1]) != 1) + np.min(x, initial=0.5),
         one(distinct(), min_rank=1, min_dim=3)),
]


def _with_nans(x):
    """NaN where x < 0, +inf where x > 2, x elsewhere."""
    return np.where(x < 0, np.nan, np.where(x > 2, np.inf, x))


def _nans(x):
    return np.where(x < 0, np.nan, x)


def _inplace(x, y):
    z = x * 1.0
    z += y
    z *= y
    z -= x
    z /= y
    z **= 2
    return z


def _sign_fixed_eigh(a):
    w, v = np.linalg.eigh(a)
    return w, v * v[..., :1, :]


def _sign_fixed_svd(a):
    u, s, vh = np.linalg.svd(a, full_matrices=False)
    ref = np.swapaxes(vh[..., :, :1], -1, -2)
    return u * ref, s, vh * np.swapaxes(ref, -1, -2)


def _fn(spec, params):
    return lambda *arrays: spec.fn(*arrays, **params)


def _assert_same(got, want):
    got_leaves, want_leaves = cr.tree_flatten(got)[0], cr.tree_flatten(want)[0]
    assert len(got_leaves) == len(want_leaves)
    for g, w in zip(got_leaves, want_leaves):
        assert np.shape(g) == np.shape(w)
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


def _check_graphs(f, args, abstract):
    """The graph, its reverse-mode graph and an abstract trace all verify, and the
    abstract trace predicts NumPy's output shapes and dtypes."""
    cr.make_graph(f)(*args).verify()
    out = f(*args)
    cts = cr.tree_map(np.ones_like, out)
    cr.make_graph(lambda *a: cr.vjp(f, *a)[1](cts))(*args).verify()
    if abstract:
        graph, _, outs = trace_flat(lambda *a: cr.tree_flatten(f(*a))[0],
                                    [Aval(np.shape(a), a.dtype) for a in args], abstract=True)
        graph.verify()
        assert [(o.shape, o.dtype) for o in outs] == \
            [(np.shape(o), np.asarray(o).dtype) for o in cr.tree_flatten(out)[0]]


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_spec(spec, data):
    args, params = spec.gen(hypothesis_draw(data))
    f = _fn(spec, params)
    with np.errstate(all="raise"):
        want = f(*args)
    _assert_same(cr.jvp(f, args, args)[0], want)
    check_grads(f, args, order=2, modes=("fwd", "rev"))
    _check_graphs(f, args, spec.abstract)


# --------------------------------------------------------------------------- coverage

def _ops_primitives():
    """Every Primitive defined by the modules of chainrule.ops (module attributes and
    the values of their dicts)."""
    found = set()
    for name in dir(chainrule.ops):
        module = getattr(chainrule.ops, name)
        if not isinstance(module, types.ModuleType):
            continue
        for value in vars(module).values():
            values = value.values() if isinstance(value, dict) else [value]
            found.update(v for v in values if isinstance(v, Primitive))
    return found


def _primitives_used(graph, into):
    for e in graph.eqns:
        into.add(e.prim)
        for p in e.params.values():
            if hasattr(p, "eqns"):
                _primitives_used(p, into)


def test_every_differentiable_primitive_of_the_ops_is_in_the_table():
    """Tracing each entry, its reverse-mode graph included, must touch every primitive
    of chainrule.ops that has a JVP rule (so each is checked by the table)."""
    used = set()
    for spec in SPECS:
        for seed in range(3):
            args, params = spec.gen(fixed_draw(seed))
            f = _fn(spec, params)
            cts = cr.tree_map(np.ones_like, f(*args))
            _primitives_used(cr.make_graph(f)(*args), used)
            _primitives_used(cr.make_graph(lambda *a: cr.vjp(f, *a)[1](cts))(*args), used)
    expected = {p for p in _ops_primitives() if p in jvp_rules}
    missing = sorted(p.name for p in expected - used)
    assert not missing, f"primitives missing from the spec table: {missing}"
    assert len(expected) > 50


# --------------------------------------------------------------------------- integer and boolean values

INTEGER_FLOW = {
    "arithmetic": lambda x: x * 2 + x // 2 - x % 3, "true_divide": lambda x: x / 2,
    "sqrt": np.sqrt, "sum": np.sum, "mean": np.mean, "prod": np.prod, "max": np.max,
    "cumsum": np.cumsum, "cumprod": np.cumprod, "var": np.var, "matmul": lambda x: x @ x.T,
    "einsum": lambda x: np.einsum("ij,kj->ik", x, x), "concatenate": lambda x: np.concatenate(
        [x, x]), "where": lambda x: np.where(x > 2, x, 0), "sort": np.sort,
    "round": np.round, "clip": lambda x: np.clip(x, 2, 4), "median": np.median,
    "det": lambda x: np.linalg.det(x[:, :2]), "take": lambda x: np.take(x, [0, 2], axis=1),
    "pad": lambda x: np.pad(x, 1), "full_like": lambda x: np.full_like(x, 2.5),
    "indexed assignment": lambda x: setitem(x, 7, (0,)), "nan_to_num": np.nan_to_num,
}


@pytest.mark.parametrize("fn", INTEGER_FLOW.values(), ids=INTEGER_FLOW.keys())
@pytest.mark.parametrize("x", [np.array([[1, 2, 3], [4, 5, 6]]),
                               np.array([[True, False, True], [False, True, True]])],
                         ids=["int", "bool"])
def test_integer_and_boolean_values_flow_through_with_numpy_dtypes(fn, x):
    want = np.asarray(fn(x))
    got = np.asarray(cr.jvp(fn, (x,), (np.zeros(x.shape),))[0])
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
