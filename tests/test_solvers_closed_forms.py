"""Derivatives of solvers against closed forms, in the three diff modes, with the
documented behaviour of each mode (float64, small problems)."""
import numpy as np
import pytest

import chainrule as cr
from chainrule import solvers as S
from chainrule.test_util import check_grads

MODES = ("unroll", "implicit", "onestep")
rng = np.random.default_rng(0)

# --------------------------------------------------------------------------- ridge
X, y = rng.standard_normal((20, 5)), rng.standard_normal(20)
LAM = 0.5
H = X.T @ X + LAM * np.eye(5)
W_STAR = np.linalg.solve(H, X.T @ y)
DW_DLAM = -np.linalg.solve(H, W_STAR)
STEP = 1 / np.linalg.eigvalsh(H).max()


def ridge(w, lam):
    return 0.5 * np.sum((X @ w - y) ** 2) + 0.5 * lam * np.sum(w * w)


@pytest.mark.parametrize("diff", MODES)
@pytest.mark.parametrize("method", ["gd", "heavy_ball", "nesterov"])
def test_ridge_hypergradient_by_gradient_descent(diff, method):
    # Heavy ball's iteration matrix on a quadratic can have 2-norm > 1 while its
    # spectral radius is < 1: the unrolled derivative still converges.
    solve = lambda lam: S.minimize(ridge, np.zeros(5), lam, method=method,
                                   step_size=STEP, momentum_weight=0.5, diff=diff,
                                   maxiter=5000, tol=1e-11)
    np.testing.assert_allclose(solve(LAM), W_STAR, atol=1e-10)
    for jac in (cr.jacfwd, cr.jacrev):
        J = jac(solve)(LAM)
        if diff == "onestep":
            # the last gradient step, from w ~ w*: d/dlam (w - s (H w - X'y)) = -s w*,
            # biased by (H^-1 - s I) w* away from the true derivative, however long GD
            # runs. Nesterov's last update is y+ = (1 + m)(y - s grad) - m x with the
            # momentum weight m = 0.5 and x held constant: (1 + m) times that.
            scale = 1.5 if method == "nesterov" else 1.0
            np.testing.assert_allclose(J, -scale * STEP * W_STAR, atol=1e-10)
            np.testing.assert_allclose(J - DW_DLAM,
                                       np.linalg.solve(H, W_STAR) - scale * STEP * W_STAR,
                                       atol=1e-10)
            assert np.linalg.norm(J - DW_DLAM) > 0.1 * np.linalg.norm(DW_DLAM)
        else:
            np.testing.assert_allclose(J, DW_DLAM, atol=1e-8)


@pytest.mark.parametrize("diff", MODES)
@pytest.mark.parametrize("line_search", [True, False])
def test_ridge_hypergradient_by_newton_is_exact_in_every_mode(diff, line_search):
    solve = lambda lam: S.minimize(ridge, np.zeros(5), lam, method="newton", diff=diff,
                                   line_search=line_search)
    for jac in (cr.jacfwd, cr.jacrev):
        np.testing.assert_allclose(jac(solve)(LAM), DW_DLAM, atol=1e-10)


@pytest.mark.parametrize("method", ["newton", "lbfgs"])
def test_second_derivative_through_implicit_solve(method):
    solve = lambda lam: S.minimize(ridge, np.zeros(5), lam, method=method, tol=1e-11)
    d2w = 2 * np.linalg.solve(H, np.linalg.solve(H, W_STAR))
    np.testing.assert_allclose(cr.jacfwd(cr.jacrev(solve))(LAM), d2w, atol=1e-8)
    np.testing.assert_allclose(cr.jacrev(cr.jacfwd(solve))(LAM), d2w, atol=1e-8)
    np.testing.assert_allclose(cr.jacfwd(cr.jacfwd(solve))(LAM), d2w, atol=1e-8)


def test_implicit_ridge_passes_the_derivative_checker_in_data_and_regularization():
    def solve(lam, X):
        loss = lambda w, theta: 0.5 * np.sum((theta[1] @ w - y) ** 2) + \
            0.5 * theta[0] * np.sum(w * w)
        return S.minimize(loss, np.zeros(5), (lam, X), method="newton", tol=1e-12)
    check_grads(solve, (LAM, X), order=2)


# --------------------------------------------------------------------------- logistic
Z = rng.standard_normal((30, 3))
labels = np.sign(Z @ np.array([1.0, -2.0, 0.5]) + 0.5 * rng.standard_normal(30))


def logistic(w, lam):
    return np.sum(np.logaddexp(0.0, -labels * (Z @ w))) + 0.5 * lam * np.sum(w * w)


def test_logistic_newton_onestep_error_shrinks_like_the_iterate_error():
    solve = lambda lam, k, diff: S.minimize(
        logistic, np.zeros(3), lam, method="newton", line_search=False, diff=diff,
        maxiter=k, on_nonconvergence="ignore")
    w_star = solve(1.0, 30, "implicit")
    J_star = cr.jacfwd(lambda lam: solve(lam, 30, "implicit"))(1.0)
    # One-step differentiates the last Newton step, from w_{k-1}: exactly the map
    # whose fixed point is w*, so the derivative error is O(|w_{k-1} - w*|).
    ratios, errors = [], []
    for k in range(1, 6):
        iterate_error = np.linalg.norm(solve(1.0, k - 1, "unroll") - w_star)
        J = cr.jacfwd(lambda lam: solve(lam, k, "onestep"))(1.0)
        errors.append(np.linalg.norm(J - J_star))
        ratios.append(errors[-1] / iterate_error)
    assert max(ratios) < 10 * np.linalg.norm(J_star)
    assert errors[-1] < 1e-4 * errors[0]     # quadratic convergence of Newton
    J_unrolled = cr.jacrev(lambda lam: solve(lam, 30, "unroll"))(1.0)
    np.testing.assert_allclose(J_unrolled, J_star, atol=1e-10)
    check_grads(lambda lam: solve(lam, 30, "implicit"), (1.0,), order=2)


# --------------------------------------------------------------------------- lasso
XL = rng.standard_normal((30, 6))
yl = XL @ np.array([2.0, -1.5, 0.0, 0.0, 1.0, 0.0]) + 0.1 * rng.standard_normal(30)
L_LASSO = np.linalg.eigvalsh(XL.T @ XL).max()


def least_squares(w, theta):
    return 0.5 * np.sum((XL @ w - yl) ** 2)


@pytest.mark.parametrize("diff", MODES)
@pytest.mark.parametrize("method", ["prox_grad", "fista"])
def test_lasso_derivative_on_and_off_the_support(diff, method):
    lam = 3.0
    solve = lambda lam: S.minimize(least_squares, np.zeros(6), (), method=method,
                                   prox=S.prox.l1, prox_theta=lam, step_size=1 / L_LASSO,
                                   diff=diff, maxiter=5000, tol=1e-12)
    w = solve(lam)
    support = np.abs(w) > 1e-8
    assert 0 < support.sum() < 6
    XS = XL[:, support]
    closed = -np.linalg.solve(XS.T @ XS, np.sign(w[support]))
    for jac in (cr.jacfwd, cr.jacrev):
        J = jac(solve)(lam)
        assert np.all(J[~support] == 0.0)
        if diff == "onestep":
            np.testing.assert_allclose(J[support], -np.sign(w[support]) / L_LASSO,
                                       atol=1e-10)
        else:
            np.testing.assert_allclose(J[support], closed, atol=1e-7)


# --------------------------------------------------------------------------- nonnegative QP
B = rng.standard_normal((5, 5))
Q = 0.3 * B @ B.T + np.eye(5)
x_target = np.array([1.0, 0.0, 2.0, 0.0, 0.5])
# p such that x_target is optimal with strict complementarity on its zero entries.
P = Q @ x_target - np.array([0.0, 1.0, 0.0, 2.0, 0.0])
FREE = x_target > 0
JAC_P = np.zeros((5, 5))
JAC_P[np.ix_(FREE, FREE)] = np.linalg.inv(Q[np.ix_(FREE, FREE)])


def quadratic(x, p):
    return 0.5 * x @ Q @ x - p @ x


def prox_quadratic(z, p, step):
    return np.linalg.solve(np.eye(5) + step * Q, z + step * p)


def nonnegative_qp(method, diff):
    step = 1 / np.linalg.eigvalsh(Q).max()
    common = dict(diff=diff, tol=1e-12, maxiter=20000)
    if method == "prox_grad":
        return lambda p: S.minimize(quadratic, np.zeros(5), p, method="prox_grad",
                                    prox=S.prox.nonnegative, step_size=step, **common)
    split = S.douglas_rachford if method == "douglas_rachford" else S.admm
    return lambda p: split(prox_quadratic, S.prox.nonnegative, np.zeros(5), p, None,
                           step_size=1.0, **common)


@pytest.mark.parametrize("method", ["prox_grad", "douglas_rachford", "admm"])
@pytest.mark.parametrize("diff", ["unroll", "implicit"])
def test_nonnegative_qp_jacobian_is_the_inverse_of_the_free_block(method, diff):
    solve = nonnegative_qp(method, diff)
    np.testing.assert_allclose(solve(P), x_target, atol=1e-9)
    for jac in (cr.jacfwd, cr.jacrev):
        np.testing.assert_allclose(jac(solve)(P), JAC_P, atol=1e-7)


def test_nonnegative_qp_onestep_differentiates_one_iteration_of_each_method():
    step = 1 / np.linalg.eigvalsh(Q).max()
    J = cr.jacfwd(nonnegative_qp("prox_grad", "onestep"))(P)
    np.testing.assert_allclose(J, step * np.diag(FREE.astype(float)), atol=1e-12)
    # With step 1 and M = (I + Q)^-1 (the prox of the quadratic, x = M (z + p)):
    M = np.linalg.inv(np.eye(5) + Q)
    # Douglas-Rachford, state z* = (I + Q) x* - p, one iteration then x = prox_f(z):
    # dx/dp = M (dz/dp + I) with dz/dp = (2 D - I) M, D = [2 x* - z* > 0].
    z = (np.eye(5) + Q) @ x_target - P
    D = np.diag((2 * x_target - z > 0).astype(float))
    J = cr.jacfwd(nonnegative_qp("douglas_rachford", "onestep"))(P)
    np.testing.assert_allclose(J, M @ ((2 * D - np.eye(5)) @ M + np.eye(5)), atol=1e-9)
    # ADMM, state (y*, u*) = (x*, p - Q x*), one iteration: dy/dp = D M, D = [x* + u* > 0].
    D = np.diag((x_target + P - Q @ x_target > 0).astype(float))
    J = cr.jacfwd(nonnegative_qp("admm", "onestep"))(P)
    np.testing.assert_allclose(J, D @ M, atol=1e-9)


# --------------------------------------------------------------------------- deep equilibrium
n, d = 6, 3
W_DEQ = 0.4 * rng.standard_normal((n, n)) / np.sqrt(n)
U = rng.standard_normal((n, d))
b_DEQ = 0.1 * rng.standard_normal(n)
x_in = rng.standard_normal(d)


def layer(z, x):
    return np.tanh(W_DEQ @ z + U @ x + b_DEQ)


@pytest.mark.parametrize("anderson", [0, 4])
def test_deep_equilibrium_jacobian(anderson):
    solve = lambda x, diff: S.fixed_point(layer, np.zeros(n), x, diff=diff,
                                          anderson=anderson, tol=1e-12)
    z = solve(x_in, "implicit")
    D = np.diag(1 - z ** 2)
    closed = np.linalg.solve(np.eye(n) - D @ W_DEQ, D @ U)
    for diff in ("unroll", "implicit"):
        for jac in (cr.jacfwd, cr.jacrev):
            np.testing.assert_allclose(jac(lambda x: solve(x, diff))(x_in), closed,
                                       atol=1e-9)
    np.testing.assert_allclose(cr.jacfwd(lambda x: solve(x, "onestep"))(x_in), D @ U,
                               atol=1e-9)
    # Jacobian-free backpropagation: the one-step gradient of a loss is a descent
    # direction (positive inner product with the true gradient).
    target = rng.standard_normal(n)
    loss = lambda x, diff: 0.5 * np.sum((solve(x, diff) - target) ** 2)
    g_true, g_one = cr.grad(loss)(x_in, "implicit"), cr.grad(loss)(x_in, "onestep")
    assert g_true @ g_one > 0
    check_grads(lambda x: solve(x, "implicit"), (x_in,), order=2)


# --------------------------------------------------------------------------- entropic OT
C = rng.random((4, 3))
a = np.full(4, 0.25)
b = np.array([0.2, 0.3, 0.5])


@pytest.mark.parametrize("diff", MODES)
@pytest.mark.parametrize("a", [a, np.array([0.1, 0.4, 0.15, 0.35])])
def test_sinkhorn_gradient_wrt_cost_is_the_plan(diff, a):
    result = S.sinkhorn(C, a, b, 0.1, diff=diff)
    np.testing.assert_allclose(result.plan.sum(axis=1), a, atol=1e-12)
    np.testing.assert_allclose(result.plan.sum(axis=0), b, atol=1e-8)
    gradient = cr.grad(lambda C: S.sinkhorn(C, a, b, 0.1, diff=diff).value)(C)
    np.testing.assert_allclose(gradient, result.plan, atol=1e-8)


def test_sinkhorn_refuses_marginals_of_different_mass():
    with pytest.raises(S.SolverOptionError, match=r"same total mass.*sum\(a\) = 1 and "
                                                  r"sum\(b\) = 2.*Normalize"):
        S.sinkhorn(C, a, 2 * b, 0.1)


def test_splitting_methods_take_unknowns_of_any_shape():
    # Two nonnegative QPs side by side as the columns of a 5 x 2 unknown: the same
    # zero pattern, so dX[i, j] / dP[k, l] = JAC_P[i, k] [j == l].
    X_target = np.stack([x_target, x_target[::-1]], axis=1)
    P2 = Q @ X_target - np.array([0.0, 1.0, 0.0, 2.0, 0.0])[:, None]
    for split in (S.douglas_rachford, S.admm):
        for diff in ("unroll", "implicit"):
            solve = lambda p: split(prox_quadratic, S.prox.nonnegative, np.zeros((5, 2)), p,
                                    None, step_size=1.0, diff=diff, tol=1e-12, maxiter=20000)
            np.testing.assert_allclose(solve(P2), X_target, atol=1e-9)
            np.testing.assert_allclose(cr.jacrev(solve)(P2),
                                       np.einsum("ik,jl->ijkl", JAC_P, np.eye(2)), atol=1e-7)


def test_sinkhorn_plan_derivatives():
    check_grads(lambda C, eps: S.sinkhorn(C, a, b, eps, tol=1e-12).plan, (C, 0.1),
                order=1, atol=1e-4, rtol=1e-4)


# --------------------------------------------------------------------------- L-BFGS one-step
A_QUAD = np.diag([1.0, 2.0, 5.0, 9.0]) + 0.3


def quadratic_in_theta(w, theta):
    return 0.5 * w @ A_QUAD @ w - theta @ w


def test_lbfgs_onestep_is_the_derivative_of_its_last_update():
    # The last update x_k = x_{k-1} - t H_k (A x_{k-1} - theta) with H_k (from the pairs
    # and gamma) constant has d x_k / d theta = t H_k. H_k is built here as the BFGS
    # matrix recursion from gamma I over the stored pairs (s, y = A s), the iterates
    # taken from runs stopped one and two iterations earlier.
    theta, k, memory = np.array([1.0, -2.0, 0.5, 3.0]), 5, 2
    solve = lambda theta, iterations, diff: S.minimize(
        quadratic_in_theta, np.zeros(4), theta, method="lbfgs", memory=memory, diff=diff,
        maxiter=iterations, tol=0.0, on_nonconvergence="ignore", return_info=True)
    iterates = [solve(theta, i, "unroll")[0] for i in range(k - memory - 1, k + 1)]
    pairs = [(b - a, A_QUAD @ (b - a)) for a, b in zip(iterates[:-2], iterates[1:-1])]
    s, y = pairs[-1]
    H_k = (s @ y) / (y @ y) * np.eye(4)
    for s, y in pairs:
        rho = 1 / (s @ y)
        H_k = (np.eye(4) - rho * np.outer(s, y)) @ H_k @ (np.eye(4) - rho * np.outer(y, s)) \
            + rho * np.outer(s, s)
    x, info = solve(theta, k, "onestep")
    np.testing.assert_allclose(x, iterates[-1], rtol=1e-12)
    for jac in (cr.jacfwd, cr.jacrev):
        np.testing.assert_allclose(jac(lambda t: solve(t, k, "onestep")[0])(theta),
                                   info.step * H_k, rtol=1e-10, atol=1e-12)
    # Not the implicit derivative A^-1 (H_k only approximates it after k updates).
    assert not np.allclose(info.step * H_k, np.linalg.inv(A_QUAD), atol=1e-3)
