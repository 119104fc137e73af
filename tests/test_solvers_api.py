"""The solver front ends: options, pytrees, non-convergence reporting, closed-over
parameters, and the errors users get."""
import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule import solvers as S
from chainrule.test_util import check_grads

rng = np.random.default_rng(3)
X, y = rng.standard_normal((12, 3)), rng.standard_normal(12)


def ridge(w, lam):
    return 0.5 * np.sum((X @ w - y) ** 2) + 0.5 * lam * np.sum(w * w)


def ridge_solution(lam):
    return np.linalg.solve(X.T @ X + lam * np.eye(3), X.T @ y)


def test_exported_from_the_package():
    import subprocess
    import sys
    code = "import chainrule as cr; print(cr.solvers.minimize.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "minimize", out.stderr


def test_pytree_unknowns_and_parameters():
    def loss(params, theta):
        lam, shift = theta["lam"], theta["shift"]
        return ridge(params["w"], lam) + 0.5 * np.sum((params["b"] - shift) ** 2)
    theta = {"lam": 0.3, "shift": np.array([1.0, -2.0])}
    init = {"w": np.zeros(3), "b": np.zeros(2)}
    for diff in ("unroll", "implicit", "onestep"):
        out = S.minimize(loss, init, theta, method="newton", diff=diff)
        np.testing.assert_allclose(out["w"], ridge_solution(0.3), atol=1e-10)
        g = cr.grad(lambda th: np.sum(S.minimize(loss, init, th, method="newton",
                                                 diff=diff)["b"]))(theta)
        np.testing.assert_allclose(g["shift"], np.ones(2), atol=1e-10)


def test_forward_mode_through_minimize():
    _, dw = cr.jvp(lambda lam: S.minimize(ridge, np.zeros(3), lam, method="lbfgs"),
                   (0.3,), (1.0,))
    np.testing.assert_allclose(dw, cr.jacfwd(ridge_solution)(0.3), atol=1e-7)


def test_vmap_over_implicit_hypergradients():
    lams = np.array([0.1, 0.5, 2.0])
    solve = lambda lam: S.minimize(ridge, np.zeros(3), lam, method="newton")
    np.testing.assert_allclose(cr.vmap(cr.jacrev(solve))(lams),
                               np.stack([cr.jacfwd(ridge_solution)(l) for l in lams]),
                               atol=1e-10)


@pytest.mark.parametrize("diff", ["implicit", "onestep"])
def test_jit_of_hypergradients(diff):
    loss = lambda lam: np.sum(S.minimize(ridge, np.zeros(3), lam, method="newton",
                                         diff=diff) ** 2)
    expected = 2 * ridge_solution(0.3) @ cr.jacfwd(ridge_solution)(0.3)
    np.testing.assert_allclose(cr.jit(cr.grad(loss))(0.3), expected, rtol=1e-10)
    np.testing.assert_allclose(cr.jit(cr.grad(loss))(0.7),
                               2 * ridge_solution(0.7) @ cr.jacfwd(ridge_solution)(0.7),
                               rtol=1e-10)
    np.testing.assert_allclose(cr.jit(loss)(0.3), np.sum(ridge_solution(0.3) ** 2))


def test_root_by_newton_in_each_mode():
    F = lambda x, c: x ** 3 + x - c            # dx/dc = 1 / (3x^2 + 1)
    c = np.array([0.5, 2.0, -1.0])
    for diff in ("unroll", "implicit", "onestep"):
        x, info = S.root(F, np.zeros(3), c, diff=diff, return_info=True)
        assert info.converged and info.residual <= 1e-8
        np.testing.assert_allclose(F(x, c), 0, atol=1e-8)
        # One-step's error is that of the iterate its last step started from.
        np.testing.assert_allclose(cr.jacrev(lambda c: S.root(F, np.zeros(3), c, diff=diff))(c),
                                   np.diag(1 / (3 * x ** 2 + 1)),
                                   atol=1e-4 if diff == "onestep" else 1e-8)
    check_grads(lambda c: S.root(F, np.zeros(3), c, solve="gmres"), (c,), order=2)


def test_anderson_acceleration_needs_fewer_iterations():
    A = np.diag(np.linspace(0.1, 0.95, 8))
    T = lambda x, b: A @ x + b
    b = np.ones(8)
    _, plain = S.fixed_point(T, np.zeros(8), b, return_info=True)
    x, accelerated = S.fixed_point(T, np.zeros(8), b, anderson=5, return_info=True)
    np.testing.assert_allclose(x, np.linalg.solve(np.eye(8) - A, b), atol=1e-8)
    assert accelerated.iterations < plain.iterations / 4


def test_neumann_series_for_the_implicit_solve():
    T = lambda x, b: 0.5 * np.tanh(x) + b
    J = cr.jacfwd(lambda b: S.fixed_point(T, np.zeros(2), b, solve="neumann"))(
        np.array([0.2, 0.4]))
    x = S.fixed_point(T, np.zeros(2), np.array([0.2, 0.4]))
    np.testing.assert_allclose(J, np.diag(1 / (1 - 0.5 * (1 - np.tanh(x) ** 2))),
                               atol=1e-7)


def test_nonconvergence_is_reported_as_the_user_chooses():
    solve = lambda policy, diff="implicit": S.minimize(
        ridge, np.zeros(3), 0.1, method="gd", step_size=1e-3, maxiter=5,
        on_nonconvergence=policy, diff=diff, return_info=True)
    for diff in ("unroll", "implicit", "onestep"):
        with pytest.raises(S.NonConvergenceError, match=r"did not converge: residual .* "
                                                        r"after 5 iterations"):
            solve("raise", diff)
        with pytest.warns(S.NonConvergenceWarning, match="did not converge"):
            solve("warn", diff)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, info = solve("ignore")
    assert info.iterations == 5 and not info.converged and info.residual > 1e-8


def test_closed_over_parameter_is_correct_when_unrolled_and_an_error_otherwise():
    def loss(lam, diff):
        objective = lambda w, theta: ridge(w, lam)
        return np.sum(S.minimize(objective, np.zeros(3), (), method="newton", diff=diff))
    expected = np.sum(cr.jacfwd(ridge_solution)(0.3))
    np.testing.assert_allclose(cr.grad(loss)(0.3, "unroll"), expected, atol=1e-10)
    for diff in ("implicit", "onestep"):
        with pytest.raises(S.ClosedOverTracerError,
                           match=r"closes over instead of receiving.*theta"):
            cr.grad(loss)(0.3, diff)


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="bfgs"), "method='bfgs' is not one of"),
    (dict(diff="implict"), "diff='implict' is not one of"),
    (dict(solve="lu"), "solve='lu' is not one of"),
    (dict(on_nonconvergence="print"), "on_nonconvergence='print' is not one of"),
    (dict(method="prox_grad"), "needs prox=, the proximal operator"),
    (dict(prox=S.prox.l1), "takes no prox"),
    (dict(method="heavy_ball"), "heavy_ball needs a fixed step_size"),
    (dict(solve="neumann", alpha=0.0), "needs a step alpha > 0"),
])
def test_bad_options_are_refused_with_a_message(kwargs, message):
    with pytest.raises(S.SolverOptionError, match=message):
        S.minimize(ridge, np.zeros(3), 0.3, **kwargs)


def test_cg_on_a_nonsymmetric_implicit_system_is_refused():
    T = lambda x, M: np.tanh(M @ x) + 1.0
    M = np.array([[0.1, 0.4], [-0.3, 0.2]])
    with pytest.raises(S.SolverOptionError, match="solve='cg' needs a symmetric system"):
        cr.jacfwd(lambda M: S.fixed_point(T, np.zeros(2), M, solve="cg"))(M)


def test_one_step_of_damped_newton_is_off_by_the_damping():
    # x+ = x - t H^-1 g has d(x+)/dx = (1 - t) I at the solution, so the one-step
    # derivative is t times the true one (documented), however long Newton runs.
    f = lambda w, c: np.sum(np.sqrt(1 + (w - c) ** 2))
    c = np.array([1.0, -1.0])
    solve = lambda c, diff: S.minimize(f, np.array([1.5, -0.6]), c, method="newton",
                                       step_size=0.75, diff=diff, maxiter=200)
    np.testing.assert_allclose(solve(c, "onestep"), c, atol=1e-8)
    for diff in ("unroll", "implicit"):
        np.testing.assert_allclose(cr.jacfwd(solve)(c, diff), np.eye(2), atol=1e-7)
    np.testing.assert_allclose(cr.jacfwd(solve)(c, "onestep"), 0.75 * np.eye(2), atol=1e-8)


@pytest.mark.parametrize("method", ["gd", "heavy_ball", "nesterov", "newton", "lbfgs",
                                    "prox_grad", "fista"])
def test_checkpointed_unroll_gives_the_same_derivative(method):
    options = dict(prox=S.prox.l1, prox_theta=0.1) if method in ("prox_grad", "fista") \
        else dict(step_size=0.02) if method in ("heavy_ball", "nesterov") else {}
    solve = lambda lam, checkpoint: S.minimize(ridge, np.zeros(3), lam, method=method,
                                               diff="unroll", checkpoint=checkpoint,
                                               maxiter=60, on_nonconvergence="ignore",
                                               **options)
    np.testing.assert_allclose(solve(0.3, True), solve(0.3, False), rtol=1e-12)
    for jac in (cr.jacfwd, cr.jacrev):
        np.testing.assert_allclose(jac(solve)(0.3, True), jac(solve)(0.3, False),
                                   rtol=1e-12, atol=1e-14)


def test_checkpointed_fixed_point_is_replayed_in_about_sqrt_n_segments():
    W = 0.5 * rng.standard_normal((4, 4)) / 2
    layer = lambda z, b: np.tanh(W @ z + b)
    loss = lambda b, checkpoint: np.sum(S.fixed_point(
        layer, np.zeros(4), b, diff="unroll", checkpoint=checkpoint, tol=1e-12) ** 2)
    b = rng.standard_normal(4)
    np.testing.assert_allclose(cr.grad(loss)(b, True), cr.grad(loss)(b, False), rtol=1e-12)
    _, info = S.fixed_point(layer, np.zeros(4), b, tol=1e-12, return_info=True)
    n = info.iterations
    segments = -(-n // int(np.ceil(np.sqrt(n))))
    assert n > 9 and str(cr.make_graph(lambda b: loss(b, True))(b)).count(
        "= checkpoint[") == segments
    assert "checkpoint" not in str(cr.make_graph(lambda b: loss(b, False))(b))
    # Anderson acceleration (a history-dependent iteration) rematerializes each map.
    anderson = lambda b, checkpoint: np.sum(S.fixed_point(
        layer, np.zeros(4), b, diff="unroll", checkpoint=checkpoint, tol=1e-12,
        anderson=3) ** 2)
    np.testing.assert_allclose(cr.grad(anderson)(b, True), cr.grad(anderson)(b, False),
                               rtol=1e-12)


def test_checkpoint_is_refused_outside_unroll():
    with pytest.raises(S.SolverOptionError, match="checkpoint=True applies to "
                                                  "diff='unroll' only"):
        S.minimize(ridge, np.zeros(3), 0.3, diff="implicit", checkpoint=True)


def _checkpointed_root(c):
    return S.root(lambda x, c: x ** 3 + x - c, np.zeros(3), c, diff="unroll",
                  checkpoint=True)


def test_checkpointed_unrolled_root_in_both_modes():
    # The Newton directions' linear_solve used to keep its operator in a closure, so
    # the traced values it captured never reached the transformations.
    c = np.array([1.0, 2.0, -1.0])
    x = _checkpointed_root(c)
    check_grads(_checkpointed_root, (c,), order=2)
    np.testing.assert_allclose(cr.jacfwd(_checkpointed_root)(c), np.diag(1 / (3 * x ** 2 + 1)),
                               atol=1e-8)


def test_jacrev_of_checkpointed_unrolled_root():
    c = np.array([1.0, 2.0, -1.0])
    np.testing.assert_allclose(cr.jacrev(_checkpointed_root)(c),
                               cr.jacfwd(_checkpointed_root)(c), atol=1e-12)


def test_backtracking_gradient_descent_reaches_a_tight_tolerance():
    # Near the minimum the decrease of a step falls below the rounding error of the
    # objective (|f| ~ 1 here): the line search used to accept ever larger steps by
    # chance there and stalled at |g| ~ 1e-6.
    A = np.concatenate([2 * np.eye(4), 0.3 * rng.standard_normal((6, 4))])
    b = rng.standard_normal(10)
    f = lambda w, lam: 0.5 * np.sum((A @ w - b) ** 2) + 0.5 * lam * np.sum(w * w)
    w, info = S.minimize(f, np.zeros(4), 1.0, method="gd", tol=1e-10, maxiter=3000,
                         return_info=True, on_nonconvergence="raise")
    assert info.converged and info.residual <= 1e-10
    np.testing.assert_allclose(w, np.linalg.solve(A.T @ A + np.eye(4), A.T @ b), atol=1e-10)
