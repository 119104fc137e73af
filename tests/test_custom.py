"""custom_jvp / custom_vjp: used in both modes and at second order."""
import numpy as np
import pytest
import scipy.linalg

import chainrule as cr
from chainrule.test_util import check_grads

X = np.array([0.3, 1.2, -0.4])


@cr.custom_jvp
def softplus(x):
    return np.log1p(np.exp(x))


@softplus.defjvp
def _softplus_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return softplus(x), t / (1 + np.exp(-x))


def test_custom_jvp_rule_is_used_and_differentiable_again():
    check_grads(lambda x: softplus(x) * x, (X,), order=2)
    calls = []

    @cr.custom_jvp
    def f(x):
        return np.sin(x)

    @f.defjvp
    def f_jvp(p, t):
        calls.append(1)
        return np.sin(p[0]), 2.0 * t[0]          # deliberately not cos: proves it is used
    assert cr.grad(lambda x: np.sum(f(x)))(X).tolist() == [2.0, 2.0, 2.0]
    assert calls


@cr.custom_vjp
def scaled_exp(x, y):
    return x * np.exp(y)


def _fwd(x, y):
    e = np.exp(y)
    return x * e, (x, e)


def _bwd(res, ct):
    x, e = res
    return ct * e, ct * x * e


scaled_exp.defvjp(_fwd, _bwd)


def test_custom_vjp_in_both_modes_and_second_order():
    check_grads(lambda x, y: scaled_exp(x, y) ** 2, (X, X + 1), order=2)


def test_custom_vjp_forward_mode_is_the_transpose_of_bwd():
    x, y = X, X + 1
    _, t = cr.jvp(scaled_exp, (x, y), (np.ones(3), np.zeros(3)))
    np.testing.assert_allclose(t, np.exp(y))


@cr.custom_vjp
def solve_with_scipy(A, b):
    return scipy.linalg.solve(A, b)


def _solve_fwd(A, b):
    x = scipy.linalg.solve(cr.concrete(A), cr.concrete(b))
    return x, (cr.concrete(A), x)


def _solve_bwd(res, ct):
    A, x = res
    w = scipy.linalg.solve(A.T, np.asarray(ct))          # not traceable: SciPy on arrays
    return -np.outer(w, x), w


solve_with_scipy.defvjp(_solve_fwd, _solve_bwd)


def test_custom_vjp_with_untraceable_bwd_gives_gradients_and_a_clear_forward_error():
    A = np.array([[3.0, 1.0], [1.0, 2.0]])
    b = np.array([1.0, -1.0])
    g = cr.grad(lambda b: np.sum(solve_with_scipy(A, b) ** 2))(b)
    x = np.linalg.solve(A, b)
    np.testing.assert_allclose(g, np.linalg.solve(A.T, 2 * x))
    with pytest.raises(cr.ChainruleError, match="forward mode through custom_vjp"):
        cr.jvp(lambda b: solve_with_scipy(A, b), (b,), (b,))


def test_custom_rules_missing_give_clear_errors():
    @cr.custom_vjp
    def f(x):
        return x
    with pytest.raises(cr.ChainruleError, match="defvjp"):
        cr.grad(lambda x: f(x) * 1.0)(1.0)


def test_jit_source_of_custom_rules_is_standalone():
    """The user's function (and for custom_vjp's forward mode the transposed bwd) is
    traced into a function of the generated module, named after it."""
    f = lambda x, y: np.sum(softplus(x) * scaled_exp(x, y) ** 2)
    x, y = X, X + 1
    for fn in (f, cr.grad(f, argnums=(0, 1)), lambda x, y: cr.jvp(f, (x, y), (y, x))[1],
               cr.hessian(f, argnums=(0, 1))):
        text = cr.source(fn, x, y)
        assert "chainrule" not in text and "impl_" not in text
        for got, want in zip(np.ravel(cr.jit(fn)(x, y)), np.ravel(fn(x, y))):
            np.testing.assert_allclose(got, want, rtol=1e-12)
    text = cr.source(lambda x, y: cr.jvp(f, (x, y), (y, x))[1], x, y)
    assert "def softplus(" in text and "def scaled_exp_forward(" in text
    weights = np.linspace(0.5, 1.5, 40)               # a constant of the generated module

    @cr.custom_jvp
    def weighted(x):
        return np.sin(x) * weights

    weighted.defjvp(lambda p, t: (weighted(p[0]), np.cos(p[0]) * weights * t[0]))
    g = cr.grad(lambda x: np.sum(weighted(x) ** 2))
    x = np.linspace(-1.0, 1.0, 40)
    assert "impl_" not in cr.source(g, x)
    np.testing.assert_allclose(cr.jit(g)(x), g(x), rtol=1e-12)
