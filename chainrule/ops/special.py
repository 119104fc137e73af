"""scipy.special's elementwise functions (its ufuncs) as primitives.

chainrule does not import scipy.special itself (it takes longer to import than
chainrule): this module is loaded the first time a traced value meets one of its ufuncs,
when the user's code has imported it already (`ops/__init__.py` registers the loader).
Each entry is a primitive with its partial derivatives written with traceable calls, as
in `elementwise.py`, so every order works; SciPy's ufuncs that NumPy has too (expm1,
log1p, exp2, cbrt) mean NumPy's primitives. Functions whose derivatives are other
members of a family indexed by an integer order (polygamma for digamma, the modified
Bessel functions I_v for i0 and i1) are one primitive per family, the order a parameter.

SciPy's Python-level functions (`logsumexp`, `softmax`, `polygamma`, `zeta`) convert
their arguments to plain arrays and cannot see tracers; write them with NumPy calls
(`logsumexp` is three lines) or wrap them with `custom_vjp`.
"""
from __future__ import annotations

import numpy as np
import scipy.special as sc

from ..core.batch_axes import broadcasting_rule
from ..core.ir import Aval, aval_of
from ..core.primitive import Zero, batch_rules, primitive
from .common import as_operand, implements, ufunc_dtype
from .elementwise import _binary, _elementwise_jvp, _unary, prims

SQRT_PI, SQRT_2PI = np.sqrt(np.pi), np.sqrt(2.0 * np.pi)


# --------------------------------------------------------------------------- families

FAMILY_FUNCTIONS: dict = {}     # family primitive -> the name of its scipy.special function


def _family(name, fn, like, partial):
    """A primitive for a family of functions fn(order, x) with an integer `order`
    parameter, whose derivative is written with members of the family:
    partial(t, x, out, order, member), member(x, order) binding the primitive. `like`
    is the family's ufunc whose dtype the results take."""
    def impl(x, order):
        return np.asarray(fn(order, x), dtype=ufunc_dtype(like, np.result_type(x)))

    def jvp(primals, tangents, outs, order):
        if type(tangents[0]) is Zero:
            return [Zero(aval_of(outs[0]))]
        return [partial(tangents[0], primals[0], outs[0], order, member)]

    p = primitive(name, impl, lambda a, order: Aval(a.shape, ufunc_dtype(like, a.dtype)),
                  jvp=jvp)
    member = lambda x, order: p.bind(x, order=order)
    batch_rules[p] = broadcasting_rule(p)
    FAMILY_FUNCTIONS[p] = fn.__name__
    return p


# The n-th derivative of digamma (n >= 1): digamma's derivatives, at any order.
polygamma_p = _family("polygamma", sc.polygamma, sc.digamma,
                      lambda t, x, out, n, member: t * member(x, n + 1))
# Modified Bessel functions of the first kind, I_v, of integer order v (I_-v = I_v):
# I_v' = (I_|v-1| + I_v+1) / 2, and the same for the scaled e^-|x| I_v minus
# sign(x) times itself.
bessel_i_p = _family("bessel_i", sc.iv, sc.i0, lambda t, x, out, v, member: t * (
    0.5 * (member(x, abs(v - 1)) + member(x, v + 1))))
bessel_ie_p = _family("bessel_ie", sc.ive, sc.i0e, lambda t, x, out, v, member: t * (
    0.5 * (member(x, abs(v - 1)) + member(x, v + 1)) - np.sign(x) * out))
FAMILIES = {  # scipy.special's ufuncs that are one member of a family: (primitive, order)
    sc.i0: (bessel_i_p, 0), sc.i1: (bessel_i_p, 1), sc.i0e: (bessel_ie_p, 0),
    sc.i1e: (bessel_ie_p, 1)}


# --------------------------------------------------------------------------- the tables

def _digamma(x):
    return prims["digamma"].bind(x)


# name: (ufunc, partial(t, x, out)); the partials trace, so they differentiate again.
UNARY = {
    "erf": (sc.erf, lambda t, x, out: t * (2.0 / SQRT_PI) * np.exp(-x * x)),
    "erfc": (sc.erfc, lambda t, x, out: t * (-2.0 / SQRT_PI) * np.exp(-x * x)),
    "erfinv": (sc.erfinv, lambda t, x, out: t * (SQRT_PI / 2.0) * np.exp(out * out)),
    "ndtr": (sc.ndtr, lambda t, x, out: t * np.exp(-0.5 * x * x) / SQRT_2PI),
    "ndtri": (sc.ndtri, lambda t, x, out: t * SQRT_2PI * np.exp(0.5 * out * out)),
    # the density over the distribution function, as one exponential (no underflow)
    "log_ndtr": (sc.log_ndtr, lambda t, x, out: t * np.exp(-0.5 * x * x - out) / SQRT_2PI),
    "expit": (sc.expit, lambda t, x, out: t * out * (1.0 - out)),
    "log_expit": (sc.log_expit, lambda t, x, out: t * prims["expit"].bind(-x)),
    "logit": (sc.logit, lambda t, x, out: t / (x * (1.0 - x))),
    "entr": (sc.entr, lambda t, x, out: t * -(np.log(x) + 1.0)),
    "gammaln": (sc.gammaln, lambda t, x, out: t * _digamma(x)),
    "gamma": (sc.gamma, lambda t, x, out: t * out * _digamma(x)),
    "rgamma": (sc.rgamma, lambda t, x, out: -t * out * _digamma(x)),
    "digamma": (sc.digamma, lambda t, x, out: t * polygamma_p.bind(x, order=1)),
    "erfcx": (sc.erfcx, lambda t, x, out: t * (2.0 * x * out - 2.0 / SQRT_PI)),
}

# name: (ufunc, partial in x, partial in y), each partial(t, x, y, out)
BINARY = {
    "xlogy": (sc.xlogy, lambda t, x, y, out: t * np.log(y), lambda t, x, y, out: t * x / y),
    "xlog1py": (sc.xlog1py, lambda t, x, y, out: t * np.log1p(y),
                lambda t, x, y, out: t * x / (1.0 + y)),
    "rel_entr": (sc.rel_entr, lambda t, x, y, out: t * (np.log(x / y) + 1.0),
                 lambda t, x, y, out: -t * x / y),
    "kl_div": (sc.kl_div, lambda t, x, y, out: t * np.log(x / y),
               lambda t, x, y, out: t * (1.0 - x / y)),
    "betaln": (sc.betaln, lambda t, a, b, out: t * (_digamma(a) - _digamma(a + b)),
               lambda t, a, b, out: t * (_digamma(b) - _digamma(a + b))),
}

for _name, (_ufunc, _partial) in UNARY.items():
    _unary(_name, _ufunc, _partial)
for _name, (_ufunc, _dx, _dy) in BINARY.items():
    _binary(_name, _ufunc, _elementwise_jvp([_dx, _dy]))
for _name in (*UNARY, *BINARY):
    batch_rules[prims[_name]] = broadcasting_rule(prims[_name])

# SciPy's own copies of NumPy ufuncs mean NumPy's primitives.
for _name in ("expm1", "log1p", "exp2", "cbrt"):
    implements(getattr(sc, _name))(lambda x, p=prims[_name]: p.bind(as_operand(x)))
for _ufunc, (_prim, _order) in FAMILIES.items():
    implements(_ufunc)(lambda x, p=_prim, n=_order: p.bind(as_operand(x), order=n))
