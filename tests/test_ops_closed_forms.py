"""Derivatives of common compositions against closed forms derived by hand (independent
of finite differences), forward and reverse, first and second order."""
import numpy as np
import pytest

import chainrule as cr
from chainrule.test_util import check_grads

rng = np.random.default_rng(3)


def logsumexp(x):
    m = np.max(x)
    return np.log(np.sum(np.exp(x - m))) + m


def softmax(x):
    z = np.exp(x - np.max(x))
    return z / np.sum(z)


def test_logsumexp_gradient_is_softmax_and_hessian_is_its_covariance():
    x = rng.standard_normal(5) * 3
    p = softmax(x)
    assert logsumexp(x) == pytest.approx(np.log(np.sum(np.exp(x))))
    np.testing.assert_allclose(cr.grad(logsumexp)(x), p, rtol=1e-12)
    np.testing.assert_allclose(cr.jacfwd(cr.grad(logsumexp))(x), np.diag(p) - np.outer(p, p),
                               atol=1e-12)
    np.testing.assert_allclose(cr.hessian(logsumexp)(x), np.diag(p) - np.outer(p, p),
                               atol=1e-12)
    check_grads(logsumexp, (x,), order=2)


def test_logsumexp_is_stable_where_the_naive_form_overflows():
    x = np.array([1000.0, 1000.0, 990.0])
    g = cr.grad(logsumexp)(x)
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, softmax(x), rtol=1e-12)


def test_softmax_cross_entropy():
    logits, label = rng.standard_normal((4, 3)), np.array([0, 2, 1, 1])
    onehot = np.eye(3)[label]

    def loss(w):
        m = np.max(w, axis=1, keepdims=True)
        logp = w - m - np.log(np.sum(np.exp(w - m), axis=1, keepdims=True))
        return -np.mean(np.sum(onehot * logp, axis=1))
    probs = np.exp(logits) / np.sum(np.exp(logits), axis=1, keepdims=True)
    np.testing.assert_allclose(cr.grad(loss)(logits), (probs - onehot) / 4, rtol=1e-12)


@pytest.mark.parametrize("x", [np.array([2.0, -1.5, 3.0, 0.5]),
                               np.array([2.0, 0.0, 3.0, 0.5]),
                               np.array([0.0, 0.0, 3.0, 0.5])], ids=["no zero", "one zero",
                                                                     "two zeros"])
def test_prod_gradient_is_the_product_of_the_others_even_at_zeros(x):
    others = np.array([np.prod(np.delete(x, i)) for i in range(x.size)])
    np.testing.assert_allclose(cr.grad(np.prod)(x), others)
    hess = np.array([[np.prod(np.delete(x, [i, j])) if i != j else 0.0 for j in range(x.size)]
                     for i in range(x.size)])
    np.testing.assert_allclose(cr.hessian(np.prod)(x), hess)


def test_cumprod_jacobian_with_a_zero():
    x = np.array([2.0, 0.0, 3.0])
    jac = np.array([[1, 0, 0], [0, 2, 0], [0, 6, 0]], dtype=float)
    np.testing.assert_allclose(cr.jacrev(np.cumprod)(x), jac)
    np.testing.assert_allclose(cr.jacfwd(np.cumprod)(x), jac)


def test_variance_and_standard_deviation():
    x = rng.standard_normal(6)
    n = x.size
    np.testing.assert_allclose(cr.grad(np.var)(x), 2 * (x - x.mean()) / n)
    np.testing.assert_allclose(cr.hessian(np.var)(x), 2 * (np.eye(n) - 1 / n) / n, atol=1e-14)
    np.testing.assert_allclose(cr.grad(lambda x: np.std(x, ddof=1))(x),
                               (x - x.mean()) / ((n - 1) * np.std(x, ddof=1)))


def test_quadratic_form_and_trace_identities():
    a, x = rng.standard_normal((3, 3)), rng.standard_normal(3)
    np.testing.assert_allclose(cr.grad(lambda x: x @ a @ x)(x), (a + a.T) @ x)
    np.testing.assert_allclose(cr.hessian(lambda x: x @ a @ x)(x), a + a.T)
    b = rng.standard_normal((3, 3))
    np.testing.assert_allclose(cr.grad(lambda a: np.trace(a @ b))(a), b.T)
    np.testing.assert_allclose(cr.grad(lambda a: np.einsum("ij,ji->", a, b))(a), b.T)


def test_sort_based_statistics():
    x = np.array([0.3, -1.0, 2.0, 0.7, 1.1])
    order = np.argsort(x)
    np.testing.assert_allclose(cr.grad(np.median)(x), np.eye(5)[order[2]])
    # quantile 0.3 of 5 values sits at position 1.2 between the 2nd and 3rd smallest
    np.testing.assert_allclose(cr.grad(lambda x: np.quantile(x, 0.3))(x),
                               0.8 * np.eye(5)[order[1]] + 0.2 * np.eye(5)[order[2]])
    # d quantile / d q = (n - 1) (x_(3) - x_(2))
    dq = cr.grad(lambda q: np.quantile(x, q))(0.3)
    assert dq == pytest.approx(4 * (np.sort(x)[2] - np.sort(x)[1]))


def test_interp_derivatives():
    xp, fp = np.array([0.0, 1.0, 3.0]), np.array([1.0, 3.0, -1.0])
    x = np.array([0.5, 2.0])
    np.testing.assert_allclose(cr.grad(lambda x: np.sum(np.interp(x, xp, fp)))(x), [2.0, -2.0])
    np.testing.assert_allclose(cr.grad(lambda fp: np.sum(np.interp(x, xp, fp)))(fp),
                               [0.5, 0.5 + 0.5, 0.5])


def test_sinc_derivatives_at_zero():
    assert cr.grad(np.sinc)(0.0) == 0.0
    assert cr.grad(cr.grad(np.sinc))(0.0) == pytest.approx(-np.pi ** 2 / 3)
    x = 0.3
    want = (np.cos(np.pi * x) * np.pi * x - np.sin(np.pi * x)) / (np.pi * x * x)
    assert cr.grad(np.sinc)(x) == pytest.approx(want)
