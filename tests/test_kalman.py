"""chainrule.kalman: the square-root filter against the covariance-form filter, its
gradient against the covariance filter's and finite differences on a model with a known
initial state and rank-deficient process noise, and the NaN of plain QR there."""
import numpy as np
import pytest

import chainrule as cr
from chainrule.core.pytree import tree_flatten
from chainrule.kalman import (LinearGaussianModel, covariance_log_likelihood,
                              log_likelihood, simulate)
from chainrule.linalg import qr_tria
from chainrule.test_util import check_grads


def degenerate_model(rng, n=3, d=2):
    """Known initial state (S0 = 0) and process noise of rank 1 in 3 dimensions."""
    return LinearGaussianModel(
        F=np.array([[0.9, 0.2, 0.0], [0.0, 0.8, 0.1], [0.0, 0.0, 0.7]])[:n, :n],
        Qh=np.array([[0.0], [0.3], [0.5]])[:n],
        H=rng.standard_normal((d, n)),
        Rh=0.3 * np.eye(d) + 0.05 * np.tril(rng.standard_normal((d, d))),
        m0=np.array([0.5, -0.2, 0.1])[:n], S0=np.zeros((n, n)))


def scalar_model_loglik(F, Q, H, R, ys):
    """Closed form for n = d = 1 with a known initial state x0 = 0: the innovations."""
    total, mean, var = 0.0, 0.0, 0.0
    for y in ys:
        s = H * H * var + R
        total += -0.5 * (np.log(2 * np.pi * s) + (y - H * mean) ** 2 / s)
        k = var * H / s
        mean, var = F * (mean + k * (y - H * mean)), F * F * var * (1 - k * H) + Q
    return total


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    model = degenerate_model(rng)
    _, ys = simulate(model, 6, rng)
    return model, ys


def test_matches_covariance_filter_and_scalar_closed_form(data):
    model, ys = data
    assert log_likelihood(model, ys) == pytest.approx(covariance_log_likelihood(model, ys),
                                                      rel=1e-12)
    one = LinearGaussianModel(np.array([[0.8]]), np.array([[0.4]]), np.array([[1.5]]),
                              np.array([[0.3]]), np.zeros(1), np.zeros((1, 1)))
    ys1 = np.array([[0.2], [-0.1], [0.5]])
    assert log_likelihood(one, ys1) == pytest.approx(
        scalar_model_loglik(0.8, 0.16, 1.5, 0.09, ys1[:, 0]), rel=1e-12)


def test_gradient_matches_covariance_filter_on_degenerate_model(data):
    model, ys = data
    g_sqrt = cr.grad(log_likelihood)(model, ys)
    g_cov = cr.grad(covariance_log_likelihood)(model, ys)
    assert isinstance(g_sqrt, LinearGaussianModel)
    for a, b in zip(tree_flatten(g_sqrt)[0], tree_flatten(g_cov)[0]):
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a, b, atol=1e-10)


def test_gradient_matches_finite_differences_on_degenerate_model(data):
    model, ys = data
    check_grads(lambda m: log_likelihood(m, ys), (model,), order=1)


def test_second_order_on_a_full_rank_model():
    rng = np.random.default_rng(1)
    model = degenerate_model(rng, n=2, d=1)
    model.Qh, model.S0 = np.array([[0.3, 0.0], [0.1, 0.4]]), 0.5 * np.eye(2)
    _, ys = simulate(model, 3, rng)
    check_grads(lambda F, H: log_likelihood(
        LinearGaussianModel(F, model.Qh, H, model.Rh, model.m0, model.S0), ys),
        (model.F, model.H), order=2)


@pytest.mark.parametrize("field", ["F", "Qh", "H"])
def test_hessian_matches_covariance_filter_on_degenerate_model(data, field):
    """The rank of the state covariance is structural here (it does not change under
    perturbations of the model), so second derivatives through tria are exact too."""
    model, ys = data

    def loglik(fn):
        def of(value):
            fields = dict(vars(model), **{field: value})
            return fn(LinearGaussianModel(**fields), ys[:4])
        return of
    value = getattr(model, field)
    np.testing.assert_allclose(cr.hessian(loglik(log_likelihood))(value),
                               cr.hessian(loglik(covariance_log_likelihood))(value),
                               atol=1e-10)


def test_plain_qr_differentiation_gives_nan_on_the_degenerate_model(data):
    model, ys = data
    assert log_likelihood(model, ys, qr_tria) == pytest.approx(log_likelihood(model, ys))
    g = cr.grad(lambda m: log_likelihood(m, ys, qr_tria))(model)
    assert np.isnan(g.F).any()


def test_errors_name_the_bad_matrix(data):
    model, ys = data
    bad = LinearGaussianModel(model.F, model.Qh, model.H, model.Rh, np.zeros(2), model.S0)
    with pytest.raises(cr.ShapeError, match=r"m0 has shape \(2,\), expected \(3,\)"):
        log_likelihood(bad, ys)
    bad = LinearGaussianModel(model.F, np.zeros(3), model.H, model.Rh, model.m0, model.S0)
    with pytest.raises(cr.ShapeError, match="Qh must be a factor of shape"):
        log_likelihood(bad, ys)
    with pytest.raises(cr.ShapeError, match=r"observations must have shape \(T, 2\)"):
        covariance_log_likelihood(model, ys[:, :1])
