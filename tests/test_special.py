"""scipy.special's ufuncs (ops/special.py): loaded on demand, exact in the tails, the same
under every transformation, and a clear error for the functions that are not primitives.
The derivative rules themselves are checked by the spec table (test_ops_spec.py)."""
import subprocess
import sys

import numpy as np
import pytest
import scipy.special as sc

import chainrule as cr
from chainrule.core.errors import TracerConversionError, UnsupportedOperationError


def test_importing_chainrule_does_not_import_scipy_special():
    code = ("import sys, numpy as np, chainrule as cr\n"
            "assert 'scipy.special' not in sys.modules\n"
            "import scipy.special as sc\n"
            "assert 'chainrule.ops.special' not in sys.modules\n"
            "g = cr.grad(lambda x: sc.expit(x).sum())(np.zeros(2))\n"
            "assert 'chainrule.ops.special' in sys.modules and np.allclose(g, 0.25)\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_log_ndtr_gradient_far_in_the_lower_tail():
    """d/dx log Phi(x) = phi(x) / Phi(x), whose asymptotic series at x -> -inf is
    -x / (1 - 1/x^2 + 3/x^4 - 15/x^6); Phi(-40) underflows, the rule must not."""
    x = np.array([-40.0, -25.0])
    got = cr.grad(lambda x: np.sum(sc.log_ndtr(x)))(x)
    want = -x / (1 - x ** -2 + 3 * x ** -4 - 15 * x ** -6)
    np.testing.assert_allclose(got, want, rtol=1e-9)
    assert np.all(np.isfinite(cr.hessian(lambda x: np.sum(sc.log_ndtr(x)))(x)))


def test_gammaln_derivatives_are_the_polygamma_functions():
    x = np.array([0.3, 2.5, -1.5])
    third = cr.jacfwd(cr.jacrev(cr.grad(lambda x: np.sum(sc.gammaln(x)))))(x)
    np.testing.assert_allclose(np.einsum("iii->i", third), sc.polygamma(2, x), rtol=1e-12)


def _loss(w, x):
    p = sc.expit(x @ w)
    return np.sum(sc.xlogy(1.0, p) + sc.xlog1py(1.0, -p)) + np.sum(sc.erf(w) * sc.ndtr(w))


def test_jit_and_vmap_agree_with_eager():
    rng = np.random.default_rng(0)
    w, x = rng.standard_normal(3), rng.standard_normal((5, 3))
    eager = cr.grad(_loss)(w, x)
    np.testing.assert_allclose(cr.jit(cr.grad(_loss))(w, x), eager, rtol=1e-12)
    ws = rng.standard_normal((4, 3))
    batched = cr.vmap(cr.grad(_loss), in_axes=(0, None))(ws, x)
    for row, wi in zip(batched, ws):
        np.testing.assert_allclose(row, cr.grad(_loss)(wi, x), rtol=1e-12)


def test_a_scipy_ufunc_without_rules_is_named():
    with pytest.raises(UnsupportedOperationError, match=r"`j0 \(a ufunc from outside NumPy\)`"):
        cr.grad(lambda x: np.sum(sc.j0(x)))(np.ones(3))


@pytest.mark.parametrize("fn, name", [(sc.logsumexp, "logsumexp"),
                                      (lambda x: sc.polygamma(1, x), "polygamma")],
                         ids=["logsumexp", "polygamma"])
def test_scipy_python_functions_refuse_tracers_naming_the_function(fn, name):
    with pytest.raises(TracerConversionError,
                       match=rf"library function `scipy\.special\.[\w.]*{name}`.*custom_vjp"):
        cr.grad(lambda x: np.sum(fn(x)))(np.ones(3))
