"""Implicit linear solves and custom_root: values, derivatives at orders 1 and 2,
refusals and error messages."""
import numpy as np
import pytest

import chainrule as cr
from chainrule import solvers as S
from chainrule.test_util import check_grads

rng = np.random.default_rng(0)
B = rng.standard_normal((4, 4)) + 4 * np.eye(4)
SPD = B @ B.T + np.eye(4)
b = rng.standard_normal(4)
X, y = rng.standard_normal((10, 4)), rng.standard_normal(10)


def matvec(v, M):
    return M @ v


@pytest.mark.parametrize("solve", ["direct", "cholesky", "cg", "minres", "gmres",
                                   "bicgstab", "neumann"])
def test_linear_solve_values(solve):
    alpha = 1 / np.linalg.eigvalsh(SPD).max()
    x = S.linear_solve(matvec, b, SPD, solve=solve, alpha=alpha, maxiter=5000)
    np.testing.assert_allclose(x, np.linalg.solve(SPD, b), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("solve", ["direct", "gmres", "bicgstab"])
def test_linear_solve_derivatives_in_rhs_and_matrix(solve):
    def f(b, M):
        return np.sin(S.linear_solve(matvec, b, M, solve=solve))
    check_grads(f, (b, B), order=2)
    J = cr.jacfwd(f, argnums=1)(b, B)
    J_ref = cr.jacfwd(lambda b, M: np.sin(np.linalg.solve(M, b)), argnums=1)(b, B)
    np.testing.assert_allclose(J, J_ref, rtol=1e-8, atol=1e-10)


def test_cg_refuses_nonsymmetric_system():
    with pytest.raises(S.SolverOptionError, match="needs a symmetric system.*gmres"):
        S.linear_solve(matvec, b, B, solve="cg")


def test_linear_solve_reports_unconverged_residual():
    with pytest.raises(S.NonConvergenceError, match="relative residual .* after 2"):
        S.linear_solve(matvec, b, SPD, solve="gmres", maxiter=2, tol=1e-12,
                       on_nonconvergence="raise")
    with pytest.warns(S.NonConvergenceWarning, match="neumann.*spectrum of alpha"):
        S.linear_solve(matvec, b, SPD, solve="neumann", alpha=1.0, maxiter=20)


def test_unknown_linear_solver_is_refused():
    with pytest.raises(S.SolverOptionError, match="solve='lu' is not one of"):
        S.linear_solve(matvec, b, SPD, solve="lu")


def ridge_optimality(w, theta):
    lam, X, y = theta
    return X.T @ (X @ w - y) + lam * w


@S.custom_root(ridge_optimality, solve="cg", symmetric=True)
def ridge_by_hand(init, theta):
    lam, X, y = theta
    return np.linalg.solve(X.T @ X + lam * np.eye(X.shape[1]), X.T @ y)


def test_custom_root_matches_closed_form_to_second_order():
    lam = 0.7
    H = X.T @ X + lam * np.eye(4)
    w = np.linalg.solve(H, X.T @ y)
    solution = lambda lam: ridge_by_hand(np.zeros(4), (lam, X, y))
    np.testing.assert_allclose(cr.jacfwd(solution)(lam), -np.linalg.solve(H, w))
    np.testing.assert_allclose(cr.jacrev(solution)(lam), -np.linalg.solve(H, w))
    np.testing.assert_allclose(cr.jacfwd(cr.jacrev(solution))(lam),
                               2 * np.linalg.solve(H, np.linalg.solve(H, w)))
    check_grads(lambda lam, X: ridge_by_hand(np.zeros(4), (lam, X, y)), (lam, X), order=2)


def test_custom_fixed_point():
    # x = 0.5 * tanh(x) + theta has a unique fixed point; dx/dtheta = 1 / (1 - 0.5 D).
    T = lambda x, theta: 0.5 * np.tanh(x) + theta

    @S.custom_fixed_point(T, solve="direct")
    def iterate(x, theta):
        for _ in range(200):
            x = T(x, theta)
        return x
    theta = np.array([0.3, -1.0])
    x = iterate(np.zeros(2), theta)
    D = 1 - np.tanh(x) ** 2
    np.testing.assert_allclose(cr.jacfwd(lambda t: iterate(np.zeros(2), t))(theta),
                               np.diag(1 / (1 - 0.5 * D)))
    check_grads(lambda t: iterate(np.zeros(2), t), (theta,), order=2)


def test_closed_over_parameter_raises_instead_of_zero_gradient():
    def loss(lam):
        optimality = lambda w, theta: X.T @ (X @ w - y) + lam * w
        solver = S.custom_root(optimality)(lambda init, theta: init)
        return np.sum(solver(np.zeros(4), ()))
    with pytest.raises(S.ClosedOverTracerError, match="closes over.*through `theta`"):
        cr.grad(loss)(0.7)


def test_custom_root_needs_a_square_system():
    solver = S.custom_root(lambda w, theta: w[:2] * theta)(lambda init, theta: init)
    with pytest.raises(cr.ShapeError, match="returns 2 values for 3 unknowns"):
        solver(np.zeros(3), 1.0)


def test_cholesky_refuses_an_indefinite_system():
    indefinite = np.diag([1.0, -2.0, 3.0, 1.0])
    with pytest.raises(S.SolverOptionError, match="needs a positive definite system"):
        S.linear_solve(matvec, b, indefinite, solve="cholesky", symmetric=True)


def test_matvec_closing_over_a_differentiated_value_keeps_its_derivative():
    # The closed-over scale becomes an operand of the primitive: x = b / (scale SPD).
    def f(scale):
        return np.sin(S.linear_solve(lambda v, M: scale * (M @ v), b, SPD, solve="cg"))
    np.testing.assert_allclose(cr.jacrev(f)(2.0),
                               cr.jacfwd(lambda s: np.sin(np.linalg.solve(s * SPD, b)))(2.0),
                               rtol=1e-6)
    check_grads(f, (2.0,), order=2)


def test_solver_closing_over_a_differentiated_value_raises():
    def f(lam):
        solver = S.custom_root(ridge_optimality)(
            lambda init, theta: init * lam)       # the solver reads lam from a closure
        return np.sum(solver(np.ones(4), (0.7, X, y)))
    with pytest.raises(S.ClosedOverTracerError, match="closes over"):
        cr.grad(f)(0.7)


def test_solver_returning_a_different_shape_raises():
    solver = S.custom_root(lambda w, theta: w - theta)(lambda init, theta: init[:2])
    with pytest.raises(cr.ShapeError, match="unlike its initial value"):
        solver(np.zeros(3), np.ones(3))


def test_singular_implicit_system_raises_instead_of_an_arbitrary_derivative():
    # x^2 = theta at theta = 0: the root x = 0 is degenerate (dF/dx = 0).
    solver = S.custom_root(lambda x, theta: x ** 2 - theta, solve="direct")(
        lambda init, theta: np.zeros(1))
    with pytest.raises(S.SingularSystemError, match="Jacobian of the optimality function"):
        cr.grad(lambda t: np.sum(solver(np.zeros(1), t)))(np.zeros(1))


def test_a_guess_that_solves_the_system_stops_the_krylov_solver_at_once():
    from chainrule.solvers.linear import solve_flat, solve_options
    exact = np.linalg.solve(SPD, b)

    def solve(b, guess=None, maxiter=1):                          # one iteration only
        options = solve_options("cg", True, 1e-10, maxiter, 1.0, "raise")
        return solve_flat(lambda ops, v: ops[0] @ v, b, [SPD], options, guess)
    with pytest.raises(S.NonConvergenceError, match="after 1 iteration"):
        solve(b)
    np.testing.assert_allclose(solve(b, exact), exact, rtol=1e-12)
    # The guess has no derivative (the tangent system is solved from scratch).
    np.testing.assert_allclose(cr.jacfwd(lambda b: solve(b, exact, maxiter=100))(b),
                               np.linalg.inv(SPD), rtol=1e-8)


def test_matvec_branching_on_values_is_refused_with_a_message():
    def matvec(v, M):
        return M @ v if np.sum(v) > 0 else 2 * (M @ v)
    with pytest.raises(cr.ConcretizationError, match="traces its matvec once with shapes "
                                                     "only.*np.where or chainrule.cond"):
        S.linear_solve(matvec, b, SPD)
