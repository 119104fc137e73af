"""scipy.special's elementwise functions (its ufuncs) as primitives.

chainrule does not import scipy.special itself (it takes longer to import than
chainrule): this module is loaded the first time a traced value meets one of its ufuncs,
when the user's code has imported it already (`ops/__init__.py` registers the loader).
Each entry is a primitive with its partial derivatives written with traceable calls, as
in `elementwise.py`, so every order works; SciPy's ufuncs that NumPy has too (expm1,
log1p, exp2, cbrt) mean NumPy's primitives.

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


# --------------------------------------------------------------------------- polygamma

def _polygamma_impl(x, order):
    return np.asarray(sc.polygamma(order, x), dtype=ufunc_dtype(sc.digamma, np.result_type(x)))


def _polygamma_jvp(primals, tangents, outs, order):
    if type(tangents[0]) is Zero:
        return [Zero(aval_of(outs[0]))]
    return [tangents[0] * polygamma_p.bind(primals[0], order=order + 1)]


# The n-th derivative of digamma, n >= 1 a parameter: digamma's derivatives, at any order.
polygamma_p = primitive(
    "polygamma", _polygamma_impl,
    lambda a, order: Aval(a.shape, ufunc_dtype(sc.digamma, a.dtype)), jvp=_polygamma_jvp)
batch_rules[polygamma_p] = broadcasting_rule(polygamma_p)


# --------------------------------------------------------------------------- the tables

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
    "gammaln": (sc.gammaln, lambda t, x, out: t * prims["digamma"].bind(x)),
    "digamma": (sc.digamma, lambda t, x, out: t * polygamma_p.bind(x, order=1)),
}

# name: (ufunc, partial in x, partial in y), each partial(t, x, y, out)
BINARY = {
    "xlogy": (sc.xlogy, lambda t, x, y, out: t * np.log(y), lambda t, x, y, out: t * x / y),
    "xlog1py": (sc.xlog1py, lambda t, x, y, out: t * np.log1p(y),
                lambda t, x, y, out: t * x / (1.0 + y)),
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
