"""chainrule.forward_grad: unbiasedness with a tolerance from the estimator's variance,
the variance formula itself, pytrees, and errors."""
import numpy as np
import pytest

import chainrule as cr
from chainrule.forward_grad import estimator_variance


def f(x):
    return 1.5 * x[0] ** 2 + np.sin(x[1]) - 0.2 * x[2] + 0.1 * np.sum(x ** 3)


def grad_f(x):
    return np.array([3 * x[0], np.cos(x[1]), -0.2]) + 0.3 * x ** 2


X = np.array([1.0, 0.3, -0.5])


@pytest.mark.parametrize("distribution", ["gaussian", "rademacher"])
def test_mean_of_many_directions_is_the_gradient_within_five_sigma(distribution):
    n = 4000
    estimate = cr.forward_grad(f, np.random.default_rng(0), num_directions=n,
                               distribution=distribution)(X)
    g = grad_f(X)
    sigma = np.sqrt(estimator_variance(g, n, distribution))
    assert np.all(np.abs(estimate - g) <= 5 * sigma)
    # The tolerance is tight enough to catch a 15% bias in the largest coordinate.
    assert 5 * sigma[0] < 0.15 * abs(g[0])


@pytest.mark.parametrize("distribution", ["gaussian", "rademacher"])
def test_sample_variance_of_single_direction_estimates_matches_the_formula(distribution):
    est = cr.forward_grad(f, np.random.default_rng(1), distribution=distribution)
    samples = np.stack([est(X) for _ in range(1500)])
    g = grad_f(X)
    np.testing.assert_allclose(np.var(samples, axis=0),
                               estimator_variance(g, 1, distribution), rtol=0.25)
    np.testing.assert_allclose(np.mean(samples, axis=0), g,
                               atol=5 * np.sqrt(np.max(estimator_variance(g, 1500))))


def test_rademacher_is_exact_in_one_dimension_and_pytrees_keep_structure():
    g = cr.forward_grad(lambda x: np.sum(x ** 3), 0, distribution="rademacher")(
        np.array([2.0]))
    np.testing.assert_array_equal(g, [12.0])
    loss = lambda p, x: np.sum((x @ p["w"] + p["b"]) ** 2)
    params = {"w": np.ones((3, 2)), "b": np.zeros(2)}
    est = cr.forward_grad(loss, 0, num_directions=2)(params, np.ones((4, 3)))
    assert set(est) == {"w", "b"} and est["w"].shape == (3, 2) and est["b"].shape == (2,)
    both = cr.forward_grad(loss, 0, argnums=(0, 1))(params, np.ones((4, 3)))
    assert isinstance(both, tuple) and both[1].shape == (4, 3)


def test_errors():
    with pytest.raises(ValueError, match="distribution must be one of"):
        cr.forward_grad(f, 0, distribution="uniform")
    with pytest.raises(ValueError, match="num_directions must be a positive integer"):
        cr.forward_grad(f, 0, num_directions=0)
    with pytest.raises(cr.ShapeError, match="scalar output"):
        cr.forward_grad(lambda x: x * 2, 0)(X)
    with pytest.raises(cr.NonDifferentiableError, match="pass floating-point"):
        cr.forward_grad(f, 0)(np.array([1, 2, 3]))
