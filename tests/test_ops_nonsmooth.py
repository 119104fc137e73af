"""The conventions at nonsmooth points (documented in chainrule/ops/elementwise.py,
reductions.py and linalg.py): every derivative there is finite and is an element of the
Clarke (conservative) Jacobian, in forward and reverse mode and at second order."""
import numpy as np
import pytest

import chainrule as cr


def both_modes(f, x):
    """The derivative of a scalar function of a scalar by jvp and by grad (must agree)."""
    fwd = cr.jvp(f, (x,), (np.ones_like(x),))[1]
    rev = cr.grad(lambda x: np.sum(f(x)))(x)
    np.testing.assert_allclose(fwd, rev)
    return fwd


@pytest.mark.parametrize("f, x, slope", [
    (np.abs, 0.0, 0.0), (np.fabs, 0.0, 0.0), (np.sign, 0.0, 0.0),
    (lambda x: np.copysign(x, 1.0), 0.0, 0.0),
    (np.floor, 2.0, 0.0), (np.ceil, -1.0, 0.0), (np.round, 0.5, 0.0), (np.trunc, 3.0, 0.0),
    (np.rint, 1.5, 0.0), (lambda x: np.heaviside(x, 0.5), 0.0, 0.0),
    (lambda x: np.maximum(x, 0.0), 0.0, 0.5), (lambda x: np.minimum(x, 0.0), 0.0, 0.5),
    (lambda x: np.fmax(x, 1.0), 1.0, 0.5), (lambda x: np.fmin(1.0, x), 1.0, 0.5),
    (lambda x: np.clip(x, 0.0, 1.0), 0.0, 0.5), (lambda x: np.clip(x, 0.0, 1.0), 1.0, 0.5),
    (lambda x: np.hypot(x, 0.0), 0.0, 0.0), (lambda x: np.arctan2(x, 0.0), 0.0, 0.0),
    (lambda x: np.linalg.norm(np.stack([x, x])), 0.0, 0.0),
])
def test_scalar_conventions(f, x, slope):
    assert both_modes(f, np.float64(x)) == slope


@pytest.mark.parametrize("f", [
    lambda x: np.maximum(x, 0.0), np.abs, lambda x: np.clip(x, 0.0, 1.0),
    lambda x: np.linalg.norm(np.stack([x, 2 * x])), lambda x: np.std(np.stack([x, x])),
])
def test_second_order_at_kinks_is_finite(f):
    assert np.isfinite(cr.grad(cr.grad(f))(0.0))


def test_ties_share_the_derivative_equally():
    x = np.array([1.0, 3.0, 3.0, -2.0])
    np.testing.assert_allclose(cr.grad(np.max)(x), [0, 0.5, 0.5, 0])
    np.testing.assert_allclose(cr.grad(lambda x: np.min(-x))(x), [0, -0.5, -0.5, 0])
    np.testing.assert_allclose(cr.grad(np.ptp)(x), [0, 0.5, 0.5, -1])
    m = np.array([[2.0, 2.0], [1.0, 5.0]])
    np.testing.assert_allclose(cr.grad(lambda m: np.sum(np.amax(m, axis=1)))(m),
                               [[0.5, 0.5], [0, 1]])
    ct = cr.vjp(np.maximum, x, np.full(4, 3.0))[1](np.ones(4))
    np.testing.assert_allclose(ct[0], [0, 0.5, 0.5, 0])
    np.testing.assert_allclose(ct[1], [1, 0.5, 0.5, 1])


def test_sort_ties_follow_the_stable_order():
    # A permutation matrix that sorts x is a Clarke element: the earlier tied element
    # goes first.
    x = np.array([2.0, 1.0, 2.0])
    jac = cr.jacobian(np.sort)(x)
    np.testing.assert_array_equal(jac, [[0, 1, 0], [1, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(cr.grad(np.median)(x), [1, 0, 0])


@pytest.mark.parametrize("branch, x", [
    (np.sqrt, 0.0), (np.cbrt, 0.0), (np.arcsin, 1.0), (np.arccos, -1.0),
    (lambda x: x ** 0.5, 0.0), (lambda x: np.power(x, 1.5), 0.0),
    (np.arccosh, 1.0),
])
def test_where_has_no_nan_from_the_branch_not_taken(branch, x):
    """The taken branch is finite and its derivative is 0; the other branch has an
    infinite partial derivative at x (the trap of JAX issue #1052)."""
    def f(x):
        return np.where(x == x0, 0.0, branch(x))
    x0 = np.float64(x)
    with np.errstate(all="ignore"):
        assert both_modes(f, x0) == 0.0
        assert cr.grad(cr.grad(f))(x0) == 0.0


def test_zero_of_sqrt_keeps_its_infinite_slope_where_it_is_taken():
    # Not a convention: the derivative of sqrt at 0 is +inf, and it is reported as such.
    assert cr.jvp(np.sqrt, (0.0,), (1.0,))[1] == np.inf


def test_std_and_norm_of_a_constant_have_zero_gradient():
    np.testing.assert_array_equal(cr.grad(np.std)(np.full(3, 2.0)), 0)
    np.testing.assert_array_equal(cr.grad(np.linalg.norm)(np.zeros((2, 2))), 0)


def test_repeated_singular_values_give_finite_derivatives():
    a = np.eye(3)
    g = cr.grad(lambda a: np.sum(np.linalg.svd(a)[0] ** 3))(a)
    assert np.all(np.isfinite(g))
    # the sum of the singular values (the nuclear norm) is symmetric in them: exact
    np.testing.assert_allclose(cr.grad(lambda a: np.linalg.norm(a, "nuc"))(a), np.eye(3),
                               atol=1e-12)
