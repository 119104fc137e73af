"""np.linalg: derivatives against finite differences (check_grads, orders 1 and 2, both
modes) and against closed forms, on single and stacked matrices; the conventions at
ties and singular matrices; error messages."""
import numpy as np
import pytest

import chainrule as cr
from chainrule.test_util import check_grads

rng = np.random.default_rng(7)


def mT(x):
    return np.swapaxes(x, -1, -2)


def spd(x):
    """A symmetric positive definite matrix (stack) built from any square x."""
    return x @ mT(x) + 3 * np.eye(x.shape[-1])


def sym(x):
    return x + mT(x)


def sign_fixed(v, ref):
    """Columns of v times the matching entries of ref: invariant to a sign flip of a
    column of both, which is the freedom eigen/singular vectors have."""
    return v * ref


SQUARE = rng.standard_normal((3, 3))
STACK = rng.standard_normal((2, 3, 3))
TALL = rng.standard_normal((2, 4, 3))
WIDE = rng.standard_normal((2, 2, 4))


# --------------------------------------------------------------------------- solve, inv

@pytest.mark.parametrize("a_batch, b_shape", [
    ((2,), (3,)), ((2,), (3, 2)), ((2,), (2, 3, 2)), ((2,), (1, 3, 1)), ((), (2, 3, 2)),
    ((1,), (2, 3, 1))])
def test_solve_broadcasting(a_batch, b_shape):
    a = spd(rng.standard_normal(a_batch + (3, 3)))
    b = rng.standard_normal(b_shape)
    np.testing.assert_allclose(cr.jvp(np.linalg.solve, (a, b), (a, b))[0],
                               np.linalg.solve(a, b))
    check_grads(np.linalg.solve, (a, b), order=2)


def test_solve_and_inv_closed_forms():
    a, b = spd(SQUARE), rng.standard_normal(3)
    ainv = np.linalg.inv(a)
    ga, gb = cr.grad(lambda a, b: np.sum(np.linalg.solve(a, b)), argnums=(0, 1))(a, b)
    lam = ainv.T @ np.ones(3)
    np.testing.assert_allclose(gb, lam)
    np.testing.assert_allclose(ga, -np.outer(lam, ainv @ b))
    da = rng.standard_normal((3, 3))
    np.testing.assert_allclose(cr.jvp(np.linalg.inv, (a,), (da,))[1], -ainv @ da @ ainv)
    check_grads(np.linalg.inv, (spd(STACK),), order=2)


# --------------------------------------------------------------------------- determinants

def test_det_and_slogdet_closed_forms_on_stacks():
    a = STACK
    inv_t = mT(np.linalg.inv(a))
    g = cr.grad(lambda a: np.sum(np.linalg.det(a)))(a)
    np.testing.assert_allclose(g, np.linalg.det(a)[:, None, None] * inv_t)
    sign, logdet = cr.jvp(np.linalg.slogdet, (a,), (a,))[0]
    np.testing.assert_allclose(sign, np.linalg.slogdet(a)[0])
    np.testing.assert_allclose(cr.grad(lambda a: np.sum(np.linalg.slogdet(a)[1]))(a), inv_t)
    check_grads(np.linalg.det, (a,), order=2)
    check_grads(lambda a: np.linalg.slogdet(a)[1], (a,), order=2)


def cofactors(a):
    n = a.shape[0]
    return np.array([[(-1) ** (i + j) * np.linalg.det(np.delete(np.delete(a, i, 0), j, 1))
                      for j in range(n)] for i in range(n)])


@pytest.mark.parametrize("rank", [0, 1, 2])
def test_det_derivative_is_the_adjugate_at_singular_matrices(rank):
    a = sum(np.outer(rng.standard_normal(3), rng.standard_normal(3)) for _ in range(rank)) \
        if rank else np.zeros((3, 3))
    g = cr.grad(np.linalg.det)(a)
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, cofactors(a), atol=1e-12)
    da = rng.standard_normal((3, 3))
    np.testing.assert_allclose(cr.jvp(np.linalg.det, (a,), (da,))[1],
                               np.sum(cofactors(a) * da), atol=1e-12)


def test_det_second_order_at_a_singular_matrix():
    a = np.outer([1.0, 2.0, 3.0], [1.0, 0.0, 1.0]) + np.outer([0.0, 1.0, 1.0], [2.0, 1.0, 0.0])
    check_grads(np.linalg.det, (a,), order=2)


# --------------------------------------------------------------------------- cholesky

def test_cholesky_orders_1_2_and_stacks():
    check_grads(lambda x: np.linalg.cholesky(spd(x)), (SQUARE,), order=2)
    check_grads(lambda x: np.linalg.cholesky(spd(x), upper=True), (STACK,), order=2)
    l = cr.jvp(np.linalg.cholesky, (spd(STACK),), (STACK,))[0]
    np.testing.assert_allclose(l, np.linalg.cholesky(spd(STACK)))


def test_cholesky_logdet_gradient_is_the_inverse():
    a = spd(SQUARE)
    logdet = lambda a: 2 * np.sum(np.log(np.diagonal(np.linalg.cholesky(a))))
    np.testing.assert_allclose(cr.grad(logdet)(a), np.linalg.inv(a), rtol=1e-10)


def test_cholesky_tangent_is_with_respect_to_the_symmetric_part():
    a, da = spd(SQUARE), rng.standard_normal((3, 3))
    t1 = cr.jvp(np.linalg.cholesky, (a,), (da,))[1]
    t2 = cr.jvp(np.linalg.cholesky, (a,), ((da + da.T) / 2,))[1]
    np.testing.assert_allclose(t1, t2)
    l = np.linalg.cholesky(a)
    np.testing.assert_allclose(t1 @ l.T + l @ t1.T, (da + da.T) / 2, atol=1e-12)
    np.testing.assert_allclose(np.triu(t1, 1), 0)


# --------------------------------------------------------------------------- qr

@pytest.mark.parametrize("a", [SQUARE, STACK, TALL, WIDE], ids=["square", "stack", "tall", "wide"])
def test_qr_orders_1_2(a):
    q, r = np.linalg.qr(a)
    got = cr.jvp(np.linalg.qr, (a,), (a,))[0]
    np.testing.assert_allclose(got.Q, q, atol=1e-12)
    np.testing.assert_allclose(got.R, r, atol=1e-12)
    check_grads(lambda a: tuple(np.linalg.qr(a)), (a,), order=2)
    check_grads(lambda a: np.linalg.qr(a, mode="r"), (a,), order=1)


@pytest.mark.parametrize("a", [TALL[0], WIDE[0]], ids=["tall", "wide"])
def test_qr_tangents_keep_the_factorization(a):
    da = rng.standard_normal(a.shape)
    (q, r), (dq, dr) = cr.jvp(np.linalg.qr, (a,), (da,))
    np.testing.assert_allclose(dq @ r + q @ dr, da, atol=1e-12)
    np.testing.assert_allclose(dq.T @ q + q.T @ dq, 0, atol=1e-12)
    np.testing.assert_allclose(np.tril(dr, -1), 0, atol=1e-12)


# --------------------------------------------------------------------------- eigh

def test_eigh_orders_1_2_on_stacks():
    check_grads(lambda x: np.linalg.eigh(sym(x))[0], (STACK,), order=2)

    def vectors(x):
        w, v = np.linalg.eigh(sym(x))
        return sign_fixed(v, v[..., :1, :])
    check_grads(vectors, (STACK,), order=2)
    check_grads(lambda x: np.linalg.eigvalsh(sym(x)), (SQUARE,), order=1)


def test_eigh_closed_forms():
    a, da = sym(SQUARE), sym(rng.standard_normal((3, 3)))
    w, v = np.linalg.eigh(a)
    np.testing.assert_allclose(cr.jvp(lambda a: np.linalg.eigh(a)[0], (a,), (da,))[1],
                               np.diag(v.T @ da @ v), atol=1e-12)
    g = cr.grad(lambda a: np.linalg.eigh(a)[0][-1])(a)
    np.testing.assert_allclose(g, np.outer(v[:, -1], v[:, -1]), atol=1e-12)
    # A spectral function: d tr(exp(A)) = exp(A)
    expm = cr.grad(lambda a: np.sum(np.exp(np.linalg.eigvalsh(a))))(a)
    np.testing.assert_allclose(expm, v @ np.diag(np.exp(w)) @ v.T, rtol=1e-10)


def test_eigh_repeated_eigenvalues_give_finite_values_exact_for_symmetric_functions():
    a = np.diag([1.0, 1.0, 2.0])
    g = cr.grad(lambda a: np.sum(np.linalg.eigh(a)[0] ** 2))(a)
    np.testing.assert_allclose(g, 2 * a, atol=1e-12)
    gv = cr.grad(lambda a: np.sum(np.linalg.eigh(a)[1] ** 3))(a)
    assert np.all(np.isfinite(gv))


def test_eigh_upper_triangle_and_stacks_of_singular_determinants():
    a = sym(STACK)
    w, v = np.linalg.eigh(a, UPLO="U")
    got = cr.jvp(lambda a: np.linalg.eigh(a, "U"), (a,), (a,))[0]
    np.testing.assert_allclose(got.eigenvalues, w)
    check_grads(lambda x: np.linalg.eigh(sym(x), UPLO="U")[0], (STACK,), order=2)
    stack = np.stack([np.outer([1.0, 2.0, 0.0], [0.0, 1.0, 1.0]), SQUARE])
    g = cr.grad(lambda a: np.sum(np.linalg.det(a)))(stack)
    np.testing.assert_allclose(g[0], cofactors(stack[0]), atol=1e-12)
    np.testing.assert_allclose(g[1], cofactors(stack[1]), atol=1e-12)


# --------------------------------------------------------------------------- svd

def test_svd_hermitian_and_qr_complete_when_unique():
    a = spd(SQUARE)
    s = cr.jvp(lambda a: np.linalg.svd(a, hermitian=True)[1], (a,), (a,))[0]
    np.testing.assert_allclose(s, np.linalg.svd(a, hermitian=True)[1])
    check_grads(lambda x: np.linalg.svd(spd(x), hermitian=True, compute_uv=False),
                (SQUARE,), order=2)
    for a in (SQUARE, WIDE[0]):
        q, r = cr.jvp(lambda a: np.linalg.qr(a, "complete"), (a,), (a,))[0]
        np.testing.assert_allclose(q @ r, a, atol=1e-12)

@pytest.mark.parametrize("a", [STACK, TALL, WIDE], ids=["square", "tall", "wide"])
def test_svd_orders_1_2(a):
    u0, s0, vh0 = np.linalg.svd(a, full_matrices=False)
    u, s, vh = cr.jvp(lambda a: np.linalg.svd(a, full_matrices=False), (a,), (a,))[0]
    np.testing.assert_allclose(s, s0)
    np.testing.assert_allclose(np.abs(u), np.abs(u0), atol=1e-12)
    check_grads(lambda a: np.linalg.svd(a, compute_uv=False), (a,), order=2)

    def factors(a):
        u, s, vh = np.linalg.svd(a, full_matrices=False)
        ref = mT(vh[..., :, :1])
        return sign_fixed(u, ref), s, sign_fixed(vh, mT(ref))
    check_grads(factors, (a,), order=2)


def test_svd_closed_forms():
    a = TALL[0]
    u, s, vh = np.linalg.svd(a, full_matrices=False)
    np.testing.assert_allclose(cr.grad(lambda a: np.linalg.norm(a, "nuc"))(a), u @ vh,
                               atol=1e-12)
    np.testing.assert_allclose(cr.grad(lambda a: np.linalg.norm(a, 2))(a),
                               np.outer(u[:, 0], vh[0]), atol=1e-12)
    np.testing.assert_allclose(cr.grad(lambda a: np.sum(np.linalg.svdvals(a) ** 2))(a),
                               2 * a, atol=1e-12)


# --------------------------------------------------------------------------- norm

@pytest.mark.parametrize("ord_, axis", [
    (None, None), (None, -1), (2, 0), (1, -1), (3, 1), (0.5, 0), (np.inf, -1),
    (-np.inf, 0), ("fro", (1, 2)), (1, (0, 1)), (-1, (1, 0)), (np.inf, (0, 2)),
    (-np.inf, (2, 1)), (2, (-2, -1)), (-2, (-1, -2)), ("nuc", (1, 2))])
def test_norm_orders_and_axes(ord_, axis):
    x = rng.standard_normal((2, 3, 4))
    x = x[0] if axis is None and ord_ is not None else x
    for keepdims in (False, True):
        f = lambda x: np.linalg.norm(x, ord_, axis, keepdims)
        np.testing.assert_allclose(cr.jvp(f, (x,), (x,))[0], f(x), rtol=1e-12)
    check_grads(lambda x: np.linalg.norm(x, ord_, axis), (x,), order=2)


@pytest.mark.parametrize("axis", [None, 0, (0, 2), (-1, 1)])
@pytest.mark.parametrize("ord_", [2, 1, np.inf, 3])
def test_vector_norm_takes_the_axes_as_one_vector(axis, ord_):
    x = rng.standard_normal((2, 3, 2))
    for keepdims in (False, True):
        f = lambda x: np.linalg.vector_norm(x, axis=axis, keepdims=keepdims, ord=ord_)
        np.testing.assert_allclose(cr.jvp(f, (x,), (x,))[0], f(x), rtol=1e-12)
    check_grads(lambda x: np.linalg.vector_norm(x, axis=axis, ord=ord_), (x,), order=2)


def test_norm_closed_form_and_zero():
    x = rng.standard_normal(4)
    np.testing.assert_allclose(cr.grad(np.linalg.norm)(x), x / np.linalg.norm(x))
    np.testing.assert_array_equal(cr.grad(np.linalg.norm)(np.zeros(4)), np.zeros(4))


# --------------------------------------------------------------------------- errors

@pytest.mark.parametrize("fn", [np.linalg.inv, np.linalg.det, np.linalg.slogdet,
                                np.linalg.cholesky, np.linalg.eigh])
def test_error_non_square(fn):
    with pytest.raises(cr.ShapeError, match=r"needs square matrices \(\.\.\., n, n\), got "
                                            r"shape \(3, 2\)"):
        cr.jvp(lambda a: fn(a)[0], (np.ones((3, 2)),), (np.ones((3, 2)),))


def test_error_matrix_functions_need_two_dims():
    with pytest.raises(cr.ShapeError, match=r"np.linalg.svd needs matrices .* got shape \(3,\)"):
        cr.grad(lambda a: np.sum(np.linalg.svd(a, compute_uv=False)))(np.ones(3))


def test_error_solve_shape_mismatch():
    with pytest.raises(cr.ShapeError, match=r"np.linalg.solve: a of shape \(3, 3\) needs b of "
                                            r"shape \(3,\) or \(\.\.\., 3, k\), got \(4,\)"):
        cr.grad(lambda a, b: np.sum(np.linalg.solve(a, b)))(np.eye(3), np.ones(4))
    with pytest.raises(cr.ShapeError, match=r"cannot be broadcast"):
        cr.grad(lambda b: np.sum(np.linalg.solve(np.ones((2, 3, 3)), b)))(np.ones((3, 3, 1)))


def test_error_non_unique_factors():
    with pytest.raises(cr.UnsupportedOperationError, match="full_matrices=False"):
        cr.jvp(lambda a: np.linalg.svd(a)[0], (np.ones((3, 2)),), (np.ones((3, 2)),))
    with pytest.raises(cr.UnsupportedOperationError, match="non-unique Q.*mode='reduced'"):
        cr.jvp(lambda a: np.linalg.qr(a, "complete")[0], (np.ones((3, 2)),), (np.ones((3, 2)),))


def test_error_matrix_norm_order():
    with pytest.raises(cr.ShapeError, match="ord=3 is not a matrix norm"):
        cr.grad(lambda a: np.linalg.norm(a, 3))(np.ones((2, 2)))
