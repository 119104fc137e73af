"""Batch rules of `linear_solve` and `implicit_root` against a loop over the batch, and
derivatives of batched solves (vmap inside and outside the derivative)."""
import numpy as np
import pytest

import chainrule as cr
from chainrule import solvers as S
from chainrule.test_util import check_grads

rng = np.random.default_rng(7)
BATCH = 3
Ms = rng.standard_normal((BATCH, 4, 4)) + 4 * np.eye(4)
SPDs = Ms @ np.swapaxes(Ms, 1, 2) + np.eye(4)
bs = rng.standard_normal((BATCH, 4))
F = lambda x, c: x ** 3 + x - c                      # root: dx/dc = 1 / (3x^2 + 1)


def matvec(v, M):
    return M @ v


def looped(f, in_axes, *args):
    """f applied to each example (the reference for vmap), stacked on axis 0."""
    def example(i):
        return f(*[a if d is None else np.take(a, i, axis=d) for a, d in zip(args, in_axes)])
    size = next(np.shape(a)[d] for a, d in zip(args, in_axes) if d is not None)
    return np.stack([example(i) for i in range(size)])


@pytest.mark.parametrize("solve", ["direct", "cholesky", "cg", "minres", "gmres",
                                   "bicgstab", "neumann"])
@pytest.mark.parametrize("in_axes", [(0, 0), (None, 0), (0, None), (1, 2)])
def test_linear_solve_batches_like_a_loop(solve, in_axes):
    alpha = 1 / np.linalg.eigvalsh(SPDs).max()
    f = lambda b, M: S.linear_solve(matvec, b, M, solve=solve, alpha=alpha, maxiter=5000)
    b = bs.T if in_axes[0] == 1 else bs[0] if in_axes[0] is None else bs
    M = np.moveaxis(SPDs, 0, 2) if in_axes[1] == 2 else SPDs[0] if in_axes[1] is None else SPDs
    got = cr.vmap(f, in_axes=in_axes)(b, M)
    np.testing.assert_allclose(got, looped(f, in_axes, b, M), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got, looped(np.linalg.solve, (in_axes[1], in_axes[0]), M, b),
                               rtol=1e-6, atol=1e-9)


def test_linear_solve_in_nested_vmap():
    b = rng.standard_normal((2, BATCH, 4))
    f = lambda b, M: S.linear_solve(matvec, b, M, solve="gmres")
    got = cr.vmap(cr.vmap(f), in_axes=(0, None))(b, SPDs)
    want = np.stack([np.stack([np.linalg.solve(M, bi) for bi, M in zip(row, SPDs)])
                     for row in b])
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_linear_solve_batch_tolerance_holds_for_every_example():
    # One right-hand side much smaller than the others: each example must still meet
    # the relative tolerance (the stacked system is solved to the smallest one's).
    b = bs * np.array([1e-6, 1.0, 1e3])[:, None]
    got = cr.vmap(lambda b, M: S.linear_solve(matvec, b, M, solve="cg", tol=1e-10))(b, SPDs)
    want = np.linalg.solve(SPDs, b[..., None])[..., 0]
    np.testing.assert_allclose(got, want, rtol=1e-8)


def test_batched_cg_refuses_a_nonsymmetric_example():
    Ms_mixed = np.concatenate([SPDs[:2], Ms[2:]])
    with pytest.raises(S.SolverOptionError, match="needs a symmetric system"):
        cr.vmap(lambda b, M: S.linear_solve(matvec, b, M, solve="cg"))(bs, Ms_mixed)


@pytest.mark.parametrize("solve", ["direct", "gmres"])
def test_derivatives_of_batched_linear_solves(solve):
    f = lambda b, M: np.sin(S.linear_solve(matvec, b, M, solve=solve))
    batched = cr.vmap(f)
    check_grads(batched, (bs, Ms), order=2)
    # vmap of a Jacobian (the derivative's linear_solve is batched) against a loop.
    J = cr.vmap(cr.jacrev(f, argnums=1))(bs, Ms)
    np.testing.assert_allclose(J, looped(cr.jacfwd(f, argnums=1), (0, 0), bs, Ms),
                               rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("diff", ["implicit", "onestep"])
def test_root_batches_like_a_loop(diff):
    cs = rng.standard_normal((4, 3)) * 2
    f = lambda c: S.root(F, np.zeros(3), c, diff=diff)
    np.testing.assert_allclose(cr.vmap(f)(cs), looped(f, (0,), cs), atol=1e-12)
    for jac in (cr.jacfwd, cr.jacrev):
        np.testing.assert_allclose(cr.vmap(jac(f))(cs), looped(jac(f), (0,), cs),
                                   atol=1e-10)
        np.testing.assert_allclose(jac(cr.vmap(f))(cs),
                                   cr.jacfwd(lambda c: looped(f, (0,), c))(cs), atol=1e-10)
    # One-step differentiates the last Newton step: its error is that of the iterate
    # the step started from, about the square root of the final one (1e-8).
    x = cr.vmap(f)(cs)
    np.testing.assert_allclose(cr.vmap(cr.jacrev(f))(cs),
                               np.stack([np.diag(1 / (3 * xi ** 2 + 1)) for xi in x]),
                               atol=1e-8 if diff == "implicit" else 1e-4)


def test_implicit_root_with_shared_and_batched_parameters():
    # theta = (lam, X, y): lam batched (from axis 1 of a (1, B) array), X and y shared.
    X, y = rng.standard_normal((10, 4)), rng.standard_normal(10)
    ridge = lambda w, theta: 0.5 * np.sum((theta[1] @ w - theta[2]) ** 2) \
        + 0.5 * theta[0] * np.sum(w * w)
    lams = np.array([[0.1, 1.0, 5.0]])

    def solve(lam):
        return S.minimize(ridge, np.zeros(4), (lam[0], X, y), method="newton")

    def closed_form(lam):
        return np.linalg.solve(X.T @ X + lam[0] * np.eye(4), X.T @ y)
    batched = cr.vmap(solve, in_axes=1)
    np.testing.assert_allclose(batched(lams), looped(closed_form, (1,), lams), atol=1e-10)
    np.testing.assert_allclose(cr.vmap(cr.jacrev(solve), in_axes=1)(lams),
                               looped(cr.jacfwd(closed_form), (1,), lams), atol=1e-10)
    check_grads(lambda lams: batched(lams) ** 2, (lams,), order=2)


def test_implicit_root_in_nested_vmap_and_its_info():
    cs = rng.standard_normal((2, 3, 3))
    f = lambda c: S.root(F, np.zeros(3), c, return_info=True)
    x, info = cr.vmap(cr.vmap(f))(cs)
    np.testing.assert_allclose(F(x, cs), 0, atol=1e-8)
    assert np.shape(info.residual) == (2, 3) and np.all(info.converged)
    g = cr.vmap(cr.vmap(cr.grad(lambda c: np.sum(f(c)[0] ** 2))))(cs)
    np.testing.assert_allclose(g, 2 * x / (3 * x ** 2 + 1), atol=1e-8)


def test_unroll_inside_vmap_says_to_use_implicit():
    f = lambda c: S.root(F, np.zeros(3), c, diff="unroll")
    with pytest.raises(cr.ConcretizationError, match="diff='unroll' cannot run there"):
        cr.vmap(f)(np.ones((2, 3)))


@pytest.mark.parametrize("method", ["gd", "nesterov", "newton", "lbfgs", "prox_grad"])
@pytest.mark.parametrize("diff", ["implicit", "onestep"])
def test_minimize_batches_like_a_loop(method, diff):
    # Each method's `last` (previous iterate, direction, L-BFGS pairs, momentum offset)
    # is stacked per example and its one-step map vmapped.
    X = np.concatenate([2 * np.eye(4), 0.3 * rng.standard_normal((6, 4))])   # cond ~ 2
    y = rng.standard_normal(10)
    options = dict(step_size=0.1) if method in ("gd", "nesterov", "prox_grad") else {}
    if method == "prox_grad":
        options.update(prox=S.prox.l1, prox_theta=0.05)
    solve = lambda lam: S.minimize(
        lambda w, lam: 0.5 * np.sum((X @ w - y) ** 2) + 0.5 * lam * np.sum(w * w),
        np.zeros(4), lam, method=method, diff=diff, tol=1e-10, maxiter=3000, **options)
    lams = np.array([0.5, 1.0, 2.0])
    np.testing.assert_allclose(cr.vmap(solve)(lams), looped(solve, (0,), lams), atol=1e-9)
    np.testing.assert_allclose(cr.vmap(cr.jacrev(solve))(lams),
                               looped(cr.jacfwd(solve), (0,), lams), atol=1e-9)


def test_jit_of_vmapped_hypergradients_reruns_at_new_values():
    f = lambda c: S.root(F, np.zeros(3), c)
    jacobians = cr.jit(cr.vmap(cr.jacrev(f)))
    for cs in (rng.standard_normal((4, 3)), 2 * rng.standard_normal((4, 3))):
        x = cr.vmap(f)(cs)
        np.testing.assert_allclose(jacobians(cs),
                                   np.stack([np.diag(1 / (3 * xi ** 2 + 1)) for xi in x]),
                                   atol=1e-10)


def test_empty_batches():
    empty = np.zeros((0, 3))
    assert cr.vmap(lambda c: S.root(F, np.zeros(3), c))(empty).shape == (0, 3)
    assert cr.vmap(lambda b: S.linear_solve(matvec, b, np.eye(3)))(empty).shape == (0, 3)
