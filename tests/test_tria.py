"""chainrule.linalg.tria: the factorization, its Gramian derivative rule on every shape
and rank, the textbook QR rule it replaces, and its errors."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import chainrule as cr
from chainrule.linalg import pinv, qr_tria, tria
from chainrule.test_util import check_grads


def low_rank(rng, n, m, rank):
    return rng.standard_normal((n, rank)) @ rng.standard_normal((rank, m))


def gram(a):
    r = tria(a)
    return r @ np.swapaxes(r, -1, -2)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 5), m=st.integers(1, 5), rank=st.integers(0, 5),
       seed=st.integers(0, 2**31))
def test_factorization_and_gram_identity_on_every_shape_and_rank(n, m, rank, seed):
    rng = np.random.default_rng(seed)
    rank = min(rank, n, m)
    a, da = low_rank(rng, n, m, rank), rng.standard_normal((n, m))
    r = tria(a)
    assert r.shape == (n, n)
    np.testing.assert_array_equal(np.triu(r, 1), 0)
    assert np.all(np.diagonal(r) >= 0)
    np.testing.assert_allclose(r @ r.T, a @ a.T, atol=1e-12)
    exact = da @ a.T + a @ da.T
    _, forward = cr.jvp(gram, (a,), (da,))
    np.testing.assert_allclose(forward, exact, atol=1e-10)
    _, pullback = cr.vjp(gram, a)
    u = rng.standard_normal((n, n))
    assert np.sum(pullback(u) * da) == pytest.approx(np.sum(u * exact), abs=1e-9)
    assert np.all(np.isfinite(pullback(u)))


def test_rank_one_example_from_the_references_exactly():
    a = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    da = np.array([[0.0, 0.0], [1.0, 2.0], [3.0, 4.0]])
    _, forward = cr.jvp(gram, (a,), (da,))
    np.testing.assert_array_equal(forward, da @ a.T + a @ da.T)
    np.testing.assert_array_equal(tria(a), [[1, 0, 0], [1, 0, 0], [1, 0, 0]])


@pytest.mark.parametrize("shape,rank", [((3, 5), 2), ((4, 4), 2), ((5, 3), 2),
                                        ((3, 5), 3), ((4, 4), 4), ((5, 3), 3)])
def test_gram_functions_first_order_any_rank(shape, rank):
    a = low_rank(np.random.default_rng(1), *shape, rank)
    check_grads(lambda a: np.sum(np.sin(gram(a))), (a,), order=1)


@pytest.mark.parametrize("shape", [(3, 5), (4, 4), (5, 3)])
def test_gram_functions_second_order_at_full_rank(shape):
    a = np.random.default_rng(2).standard_normal(shape)
    check_grads(lambda a: np.sum(np.sin(gram(a))), (a,), order=2)


@pytest.mark.parametrize("shape", [(3, 5), (4, 4)])
def test_the_factor_itself_second_order_at_full_row_rank(shape):
    a = np.random.default_rng(3).standard_normal(shape)
    check_grads(lambda a: np.sum(np.cos(tria(a))), (a,), order=2)


def test_full_row_rank_factor_is_cholesky_of_gram():
    a = np.random.default_rng(4).standard_normal((3, 6))
    np.testing.assert_allclose(tria(a), np.linalg.cholesky(a @ a.T), atol=1e-12)


def test_textbook_qr_rule_agrees_at_full_rank_and_gives_nan_when_rank_deficient():
    rng = np.random.default_rng(5)
    full = rng.standard_normal((3, 4))
    f = lambda tri: (lambda a: np.sum(np.sin(tri(a) @ tri(a).T)))
    np.testing.assert_allclose(cr.grad(f(qr_tria))(full), cr.grad(f(tria))(full), atol=1e-12)
    deficient = np.array([[1.0, 0.0], [1.0, 0.0]])
    assert np.isnan(cr.grad(f(qr_tria))(deficient)).any()
    g = cr.grad(f(tria))(deficient)
    np.testing.assert_allclose(g, cr.grad(lambda a: np.sum(np.sin(a @ a.T)))(deficient))


def test_pinv_and_its_derivative_at_constant_rank():
    rng = np.random.default_rng(6)
    a = rng.standard_normal((4, 3))
    np.testing.assert_allclose(pinv(a), np.linalg.pinv(a), atol=1e-12)
    check_grads(lambda a: np.sum(np.tanh(pinv(a))), (a,), order=2)


@pytest.mark.parametrize("fn,shape", [(tria, (2, 3, 3, 5)), (tria, (3, 4, 2)),
                                      (pinv, (2, 4, 3)), (qr_tria, (3, 2, 4))])
def test_stacks_of_matrices_like_a_loop(fn, shape):
    """(..., n, m): each matrix on its own, values and gradients."""
    a = np.random.default_rng(7).standard_normal(shape)
    f = lambda a: np.sum(np.sin(fn(a)))
    matrices = a.reshape((-1,) + shape[-2:])
    np.testing.assert_allclose(fn(a), np.reshape([fn(m) for m in matrices],
                                                 shape[:-2] + np.shape(fn(matrices[0]))))
    np.testing.assert_allclose(cr.grad(f)(a), np.reshape([cr.grad(f)(m) for m in matrices],
                                                         shape), rtol=1e-10)


@pytest.mark.parametrize("fn,shape", [(tria, (2, 3, 5)), (gram, (2, 4, 3)), (pinv, (2, 4, 3)),
                                      (qr_tria, (2, 3, 4))])
def test_stacks_second_order(fn, shape):
    a = np.random.default_rng(8).standard_normal(shape)
    check_grads(lambda a: np.sum(np.sin(fn(a))), (a,), order=2)


def test_errors_say_what_to_do():
    with pytest.raises(cr.ShapeError, match="needs a matrix or a stack of matrices"):
        tria(np.ones(3))
    with pytest.raises(cr.NonDifferentiableError, match="floating-point"):
        tria(np.ones((2, 2), dtype=int))
    with pytest.raises(cr.ShapeError, match="use chainrule.linalg.tria"):
        qr_tria(np.ones((3, 2)))


@pytest.mark.parametrize("fn,shape", [(tria, (2, 3, 5)), (gram, (4, 3)), (pinv, (2, 4, 3)),
                                      (qr_tria, (3, 4))])
def test_compiled_to_numpy(fn, shape):
    """jit's source of the factorizations and their derivatives calls NumPy only."""
    a = np.random.default_rng(9).standard_normal(shape)
    f = cr.value_and_grad(lambda a: np.sum(np.tanh(fn(a))))
    assert "impl_" not in cr.source(f, a)
    for got, want in zip(cr.jit(f)(a), f(a)):
        np.testing.assert_allclose(got, want, rtol=1e-12)
