"""Proximal operators and projections: values against their definitions, derivatives
against finite differences away from kinks, and conservative Jacobians (finite, never
NaN, the documented element) at kinks."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import chainrule as cr
from chainrule import solvers as S
from chainrule.test_util import check_grads

P = S.prox
vectors = st.lists(st.floats(-3, 3), min_size=2, max_size=6).map(np.array)


@settings(max_examples=15, deadline=None)
@given(vectors, st.floats(0.1, 2.0), st.floats(0.2, 1.5))
def test_prox_operators_minimize_their_objective(x, lam, step):
    cases = [
        (P.l1, lam, lambda z: lam * np.sum(np.abs(z))),
        (P.squared_l2, lam, lambda z: 0.5 * lam * np.sum(z * z)),
        (P.l2, lam, lambda z: lam * np.linalg.norm(z)),
        (P.elastic_net, (lam, 0.5), lambda z: lam * np.sum(np.abs(z)) + 0.25 * np.sum(z * z)),
    ]
    rng = np.random.default_rng(0)
    for prox, param, g in cases:
        z = prox(x, param, step)
        value = step * g(z) + 0.5 * np.sum((z - x) ** 2)
        for _ in range(20):
            other = z + 0.1 * rng.standard_normal(x.shape)
            assert value <= step * g(other) + 0.5 * np.sum((other - x) ** 2) + 1e-12


@settings(max_examples=15, deadline=None)
@given(vectors, st.floats(0.5, 3.0))
def test_projections_land_in_their_set_and_are_nearest(x, radius):
    rng = np.random.default_rng(1)
    sets = [
        (P.box(x, (-1.0, 0.5)), lambda z: np.all((z >= -1 - 1e-12) & (z <= 0.5 + 1e-12)),
         lambda: np.clip(rng.uniform(-1, 0.5, x.shape), -1, 0.5)),
        (P.nonnegative(x), lambda z: np.all(z >= 0), lambda: rng.random(x.shape)),
        (P.simplex(x, radius), lambda z: np.all(z >= 0) and abs(z.sum() - radius) < 1e-9,
         lambda: radius * rng.dirichlet(np.ones(x.shape[0]))),
        (P.l2_ball(x, radius), lambda z: np.linalg.norm(z) <= radius + 1e-12,
         lambda: radius * rng.uniform() * (v := rng.standard_normal(x.shape)) / np.linalg.norm(v)),
    ]
    for z, member, sample in sets:
        assert member(z)
        for _ in range(20):
            assert np.linalg.norm(z - x) <= np.linalg.norm(sample() - x) + 1e-12


@pytest.mark.parametrize("prox, param", [
    (P.l1, 0.3), (P.squared_l2, 0.7), (P.l2, 0.5), (P.elastic_net, (0.3, 0.4)),
    (P.box, (-1.0, 0.5)), (P.nonnegative, None), (P.simplex, 1.0), (P.l2_ball, 1.0)])
def test_prox_derivatives_away_from_kinks(prox, param):
    x = np.array([1.3, -0.2, 0.45, -2.1, 0.8])
    if param is None:
        check_grads(lambda x: prox(x, param, 0.5), (x,), order=2)
    else:
        check_grads(lambda x, p: prox(x, p, 0.5), (x, param), order=2)


def test_soft_thresholding_jacobian_on_and_off_the_support_and_at_the_kink():
    x = np.array([2.0, 0.1, -0.3, 0.5, -3.0])
    J = cr.jacfwd(lambda x: P.l1(x, 0.5, 1.0))(x)
    # slope 1 outside the threshold, exactly 0 inside, 1/2 at |x| = threshold
    np.testing.assert_array_equal(np.diag(J), [1.0, 0.0, 0.0, 0.5, 1.0])
    dlam = cr.jacrev(lambda lam: P.l1(x, lam, 1.0))(0.5)
    np.testing.assert_array_equal(dlam, [-1.0, 0.0, 0.0, -0.5, 1.0])


@pytest.mark.parametrize("prox, param, x", [
    (P.l1, 0.5, np.zeros(3)), (P.l2, 0.5, np.zeros(3)), (P.l2_ball, 1.0, np.zeros(3)),
    (P.l2, 1.0, np.array([0.6, 0.8, 0.0])), (P.l2_ball, 1.0, np.array([0.6, 0.8, 0.0])),
    (P.box, (0.0, 1.0), np.array([0.0, 1.0, 0.5])), (P.nonnegative, None, np.zeros(3)),
    (P.simplex, 1.0, np.full(3, 1 / 3)), (P.simplex, 1.0, np.zeros(3))])
def test_jacobians_at_kinks_are_finite_in_both_modes(prox, param, x):
    for jac in (cr.jacfwd, cr.jacrev):
        J = jac(lambda x: prox(x, param, 1.0))(x)
        assert np.all(np.isfinite(J))
    J = cr.jacfwd(lambda x: prox(x, param, 1.0))(x)
    if prox is P.l2 and np.linalg.norm(x) == 0:
        np.testing.assert_array_equal(J, 0.0)          # the ball maps to 0
    if prox is P.box:
        np.testing.assert_array_equal(np.diag(J), [0.5, 0.5, 1.0])


def test_simplex_projection_jacobian_is_the_centering_on_the_support():
    x = np.array([0.9, 0.5, -1.0, 0.3])
    z = P.simplex(x)
    support = z > 0
    k = support.sum()
    expected = np.zeros((4, 4))
    expected[np.ix_(support, support)] = np.eye(k) - 1.0 / k
    np.testing.assert_allclose(cr.jacrev(P.simplex)(x), expected, atol=1e-12)
