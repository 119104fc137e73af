"""Matrix-free linear solves A x = b, differentiable in b and in A.

A is given by `matvec(operands, v)`: a pure function, linear in the 1-D vector v, of a
list of operand arrays (for implicit differentiation: the solution and the parameters,
with A the Jacobian of the optimality function, applied through a JVP). The primitive
`linear_solve` takes b and the operands as inputs, so nothing is hidden in a closure:

- it is linear in b, and its transpose solves the transposed system Aᵀ u = c, with Aᵀ
  applied through the VJP of matvec. Reverse mode therefore comes from the forward rule;
- its JVP, x' = A⁻¹ (b' - A' x) with A' x the JVP of matvec in the operands, is again a
  `linear_solve`, so derivatives of every order exist.

The solve itself always runs on concrete arrays (a primitive's implementation): when the
right-hand side is traced (higher order, nested transformations) the trace records the
primitive and the NumPy/SciPy solve runs on the values underneath. Methods:

- "direct": dense A (n products with the basis), LU; "cholesky" for symmetric positive
  definite A. For small systems (up to a few thousand unknowns).
- "cg", "minres": SciPy's Krylov solvers; need a symmetric A, which is checked with two
  random probes (<u, A v> against <v, A u>) — a nonsymmetric A is refused with an error
  instead of giving garbage (jaxopt #17, #274). CG further needs A positive definite.
- "gmres", "bicgstab": SciPy's Krylov solvers for general A.
- "neumann": x = α Σ_{j<=K} (I - αA)^j b (Lorraine et al. 2020), which converges when
  the spectrum of αA lies in (0, 2); equal to K gradient steps started at the solution.

The relative residual |A x - b| / |b| of every solve is checked against `tol`; a solve
that misses it (or breaks down) is reported by the `on_nonconvergence` policy.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse.linalg as spla

from .. import api
from ..core.ir import aval_of
from ..core.primitive import Zero, primitive
from ..transforms.jvp import instantiate
from ..transforms.transpose import backward_pass
from .common import (SingularSystemError, SolverOptionError, check_choice,
                     check_no_closed_over_tracers, closed_over_tracers, ravel_tree,
                     report_nonconvergence)

METHODS = ("direct", "cholesky", "cg", "minres", "gmres", "bicgstab", "neumann")
SYMMETRIC_METHODS = ("cg", "minres", "cholesky")


def apply_operator(matvec, operands, v, transposed):
    """A v, or Aᵀ v through the VJP of the linear map w -> A w (traceable)."""
    if not transposed:
        return matvec(list(operands), v)
    _, pullback = api.vjp(lambda w: matvec(list(operands), w), np.zeros_like(v))
    return pullback(v)[0]


def _concrete_operator(matvec, operands, n, dtype, transposed):
    """A (or Aᵀ) as a function on arrays, from one linearization of matvec."""
    _, f_lin = api.linearize(lambda w: matvec(list(operands), w), np.zeros(n, dtype))
    if transposed:
        return lambda u: instantiate(backward_pass(f_lin.graph, [np.asarray(u, dtype)])[0])
    return lambda v: np.asarray(f_lin(np.asarray(v, dtype)))


def _check_symmetric(apply, n, dtype, method):
    rng = np.random.default_rng(0)
    u, v = rng.standard_normal((2, n)).astype(dtype)
    uAv, vAu = float(u @ apply(v)), float(v @ apply(u))
    if abs(uAv - vAu) > 1e-6 * max(abs(uAv), abs(vAu), 1e-30):
        raise SolverOptionError(
            f"solve={method!r} needs a symmetric system, but this one is not: for random "
            f"u, v, <u, A v> = {uAv:.6g} while <v, A u> = {vAu:.6g}. The Jacobian of a "
            f"fixed-point map or of a general root problem is not symmetric; use "
            f"solve='gmres', 'bicgstab' or 'direct' (or pass symmetric=False).")


def _dense(apply, n, dtype):
    return np.stack([apply(e) for e in np.eye(n, dtype=dtype)], axis=1)


def _neumann(apply, b, alpha, tol, maxiter):
    term, total = b.copy(), b.copy()
    scale = np.linalg.norm(b)
    for k in range(maxiter):
        term = term - alpha * apply(term)
        total = total + term
        if np.linalg.norm(term) <= 1e-3 * tol * scale:
            break
    return alpha * total, k + 1


def _krylov(method, apply, b, n, tol, maxiter):
    op = spla.LinearOperator((n, n), matvec=apply, dtype=b.dtype)
    solver = {"cg": spla.cg, "minres": spla.minres, "gmres": spla.gmres,
              "bicgstab": spla.bicgstab}[method]
    iterations = [0]

    def count(_):
        iterations[0] += 1
    kwargs = dict(rtol=tol * 1e-2, maxiter=maxiter, callback=count)
    if method != "minres":
        kwargs["atol"] = 0.0
    if method == "gmres":
        kwargs["callback_type"] = "legacy"
    x, _ = solver(op, b, **kwargs)
    return x, iterations[0]


def _impl(b, *operands, matvec, transposed, method, symmetric, tol, maxiter, alpha,
          on_nonconvergence):
    n, dtype = b.shape[0], b.dtype
    if not np.any(b):
        return np.zeros_like(b)
    if symmetric:
        transposed = False
    apply = _concrete_operator(matvec, operands, n, dtype, transposed)
    if method in SYMMETRIC_METHODS and not symmetric:
        _check_symmetric(apply, n, dtype, method)
    with np.errstate(all="ignore"):
        if method == "direct":
            try:
                x, iterations = np.linalg.solve(_dense(apply, n, dtype), b), n
            except np.linalg.LinAlgError:
                raise SingularSystemError(
                    "the linear system of the implicit derivative is singular: the "
                    "Jacobian of the optimality function at the solution is not "
                    "invertible, so the solution is not a differentiable function of "
                    "theta there (e.g. a non-isolated or degenerate solution). Check the "
                    "optimality function, or use diff='unroll' / 'onestep'.") from None
        elif method == "cholesky":
            try:
                factor = scipy.linalg.cho_factor(_dense(apply, n, dtype))
            except np.linalg.LinAlgError:
                raise SolverOptionError(
                    "solve='cholesky' needs a positive definite system, and this one is "
                    "not; use solve='direct' (LU) or 'gmres'") from None
            x, iterations = scipy.linalg.cho_solve(factor, b), n
        elif method == "neumann":
            x, iterations = _neumann(apply, b, alpha, tol, maxiter)
        else:
            x, iterations = _krylov(method, apply, b, n, tol, maxiter)
        residual = np.linalg.norm(apply(x) - b) / np.linalg.norm(b)
    if not residual <= tol:
        report_nonconvergence(
            f"the linear solve of the implicit derivative (solve={method!r}) reached a "
            f"relative residual of {residual:.3g} > tol {tol:g} after {iterations} "
            f"iteration(s); the derivative is inaccurate. Raise linear_maxiter, loosen "
            f"linear_tol, or use another solve (e.g. 'direct' for small systems"
            + (", or a smaller alpha: the Neumann series needs the spectrum of alpha*A "
               "in (0, 2)" if method == "neumann" else "") + ").", on_nonconvergence)
    return x


def _shape(b, *operands, **params):
    return b


def _jvp(primals, tangents, outs, **params):
    (b, *operands), (tb, *t_operands), x = primals, tangents, outs[0]
    rhs = None if isinstance(tb, Zero) else tb
    if not all(isinstance(t, Zero) for t in t_operands):
        transposed = params["transposed"] and not params["symmetric"]
        _, dAx = api.jvp(
            lambda *ops: apply_operator(params["matvec"], ops, x, transposed),
            tuple(operands), tuple(instantiate(t) for t in t_operands))
        rhs = -dAx if rhs is None else rhs - dAx
    return [linear_solve_p.bind(rhs, *operands, **params)]


def _transpose(cts, b, *operands, **params):
    ct = cts[0]
    if isinstance(ct, Zero):
        return [None] * (1 + len(operands))
    flipped = dict(params, transposed=not params["transposed"])
    return [linear_solve_p.bind(ct, *operands, **flipped)] + [None] * len(operands)


linear_solve_p = primitive("linear_solve", _impl, _shape, jvp=_jvp, transpose=_transpose)


def solve_options(solve, symmetric, tol, maxiter, alpha, on_nonconvergence):
    """Validated parameters of `linear_solve_p` (everything but matvec and transposed)."""
    check_choice(solve, METHODS, "solve")
    check_choice(on_nonconvergence, ("warn", "raise", "ignore"), "on_nonconvergence")
    if solve == "neumann" and not alpha > 0:
        raise SolverOptionError(f"solve='neumann' needs a step alpha > 0, got {alpha!r}")
    return dict(method=solve, symmetric=bool(symmetric), tol=float(tol),
                maxiter=int(maxiter), alpha=float(alpha),
                on_nonconvergence=on_nonconvergence)


def solve_flat(matvec, b, operands, options):
    """x with A x = b for 1-D b; A = matvec(operands, .). Differentiable in b and operands.
    When matvec closes over traced values (an unrolled solver whose objective reads a
    differentiated value from a closure), A is formed by tracing matvec on the basis and
    solved with np.linalg.solve, so that the closure's derivative is kept."""
    if closed_over_tracers(matvec, (operands, b)):
        return np.linalg.solve(np.stack([matvec(operands, e) for e in
                                         np.eye(b.shape[0], dtype=aval_of(b).dtype)],
                                        axis=1), b)
    return linear_solve_p.bind(b, *operands, matvec=matvec, transposed=False, **options)


def linear_solve(matvec, b, *operands, solve="gmres", symmetric=False, tol=1e-8,
                 maxiter=1000, alpha=1.0, on_nonconvergence="warn"):
    """Solves matvec(x, *operands) = b for x (b and x of the same pytree structure),
    differentiably in b and in the operands. matvec must be linear in x and must read
    every differentiated value from its operands, not from a closure."""
    b_flat, unravel = ravel_tree(b)
    check_no_closed_over_tracers(lambda x, ops: matvec(x, *ops), (b, operands),
                                 "linear_solve's matvec")

    def flat_matvec(ops, v):
        return ravel_tree(matvec(unravel(v), *ops))[0]
    flat_matvec.__name__ = getattr(matvec, "__name__", "matvec")
    dtype = np.result_type(aval_of(b_flat).dtype, np.float64)
    options = solve_options(solve, symmetric, tol, maxiter, alpha, on_nonconvergence)
    return unravel(solve_flat(flat_matvec, b_flat.astype(dtype), list(operands), options))
