"""Matrix-free linear solves A x = b, differentiable in b and in A.

A is given by `matvec(operands, v)`, a function linear in v. It is traced once, with
shapes only, into a graph (operands..., v) -> A v; the values it reads from enclosing
code (captured arrays, traced values of transformations in progress) become leading
operands. The primitive `linear_solve` takes b and all operands as inputs, so nothing
is hidden in a closure and every transformation sees them (as JAX's
custom_linear_solve):

- it is linear in b, and its transpose solves the transposed system Aᵀ u = c, with the
  graph of Aᵀ the transpose of A's graph in v. Reverse mode therefore comes from the
  forward rule;
- its JVP, x' = A⁻¹ (b' - A' x) with A' x the JVP of the graph in the operands, is
  again a `linear_solve`, so derivatives of every order exist;
- its batch rule solves the stacked systems at once: the graph is batched and the
  batch axis of b becomes a leading "block" axis (A acts on each block separately).

b may have leading block axes (`blocks` of them, from vmap) before the unknowns of one
system. The solve always runs on concrete arrays (a primitive's implementation). Methods:

- "direct": dense A (one batched product with each basis vector), LU; "cholesky" for
  symmetric positive definite A. For small systems (up to a few thousand unknowns).
- "cg", "minres": SciPy's Krylov solvers; need a symmetric A, which is checked with two
  random probes (<u, A v> against <v, A u>) — a nonsymmetric A is refused with an error
  instead of giving garbage (jaxopt #17, #274). CG further needs A positive definite.
- "gmres", "bicgstab": SciPy's Krylov solvers for general A.
- "neumann": x = α Σ_{j<=K} (I - αA)^j b (Lorraine et al. 2020), which converges when
  the spectrum of αA lies in (0, 2); equal to K gradient steps started at the solution.

Krylov and Neumann solve the blocks as one block-diagonal system, with the tolerance
of the block with the smallest right-hand side. The Krylov solvers can start from a
guess (an input of the primitive, without derivative), e.g. the solution of the same
system found by an untraced solver: they then stop at once. The relative residual |A x - b| / |b|
of every block is checked against `tol`; a solve that misses it (or breaks down) is
reported by the `on_nonconvergence` policy.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse.linalg as spla

from .. import api
from ..control import jvp_graph_of, trace_closed, transposed_graph_of
from ..core.batch_axes import batch_size, batch_to_front, move_batch_axis
from ..core.errors import ConcretizationError
from ..core.ir import Literal, Var, aval_of
from ..core.primitive import Zero, primitive
from ..core.trace import eval_graph
from ..transforms.batching import batch_graph
from .common import (SingularSystemError, SolverOptionError, check_choice, ravel_tree,
                     report_nonconvergence)

METHODS = ("direct", "cholesky", "cg", "minres", "gmres", "bicgstab", "neumann")
SYMMETRIC_METHODS = ("cg", "minres", "cholesky")


def _block_operator(matvec, operands, shape, dtype, blocks):
    """A on the rows of a (number of blocks, unknowns per block) array. The equations
    of matvec that do not depend on v (e.g. the Hessian's factors at x) run once here;
    each product runs the others only."""
    v = matvec.invars[-1]
    env = dict(zip(matvec.invars, operands))
    read = lambda env, a: a.value if isinstance(a, Literal) else env[a]
    linear, dependent = [], {v}
    for e in matvec.eqns:
        if any(isinstance(a, Var) and a in dependent for a in e.inputs):
            linear.append(e)
            dependent.update(e.outputs)
        else:
            out = e.prim.impl(*[read(env, a) for a in e.inputs], **e.params)
            env.update(zip(e.outputs, out if e.prim.multiple_results else [out]))
    used = {a for e in linear for a in e.inputs} | set(matvec.outvars)
    env = {var: value for var, value in env.items() if var in used}
    n = int(np.prod(shape[blocks:], dtype=np.int64))

    def apply(rows):
        local = dict(env)
        local[v] = np.reshape(rows, shape)
        for e in linear:
            out = e.prim.impl(*[read(local, a) for a in e.inputs], **e.params)
            local.update(zip(e.outputs, out if e.prim.multiple_results else [out]))
        return np.asarray(read(local, matvec.outvars[0]), dtype).reshape(-1, n)
    return apply


def _check_symmetric(apply, rows_shape, dtype, method):
    rng = np.random.default_rng(0)
    u, v = rng.standard_normal((2,) + rows_shape).astype(dtype)
    uAv, vAu = np.sum(u * apply(v), axis=1), np.sum(v * apply(u), axis=1)
    gap = np.abs(uAv - vAu) / np.maximum(np.maximum(np.abs(uAv), np.abs(vAu)), 1e-30)
    if np.any(gap > 1e-6):
        k = int(np.argmax(gap))
        raise SolverOptionError(
            f"solve={method!r} needs a symmetric system, but this one is not: for random "
            f"u, v, <u, A v> = {uAv[k]:.6g} while <v, A u> = {vAu[k]:.6g}. The Jacobian "
            f"of a fixed-point map or of a general root problem is not symmetric; use "
            f"solve='gmres', 'bicgstab' or 'direct' (or pass symmetric=False).")


def _dense(apply, rows_shape, dtype):
    """The blocks of A, (blocks, n, n): one product with each basis vector."""
    n = rows_shape[1]
    return np.stack([apply(np.broadcast_to(e, rows_shape)) for e in np.eye(n, dtype=dtype)],
                    axis=-1)


def _neumann(apply, b, alpha, tol, maxiter):
    term, total = b.copy(), b.copy()
    for k in range(maxiter):
        term = term - alpha * apply(term)
        total = total + term
        if np.linalg.norm(term) <= 1e-3 * tol:
            break
    return alpha * total, k + 1


def _krylov(method, apply, b, guess, tol, maxiter):
    """(x, iterations, A x when known): a guess that already meets the tolerance is
    returned with its product, which the residual check then reuses."""
    if guess is not None:
        guess = np.reshape(guess, b.shape)
        product = apply(guess)
        if np.linalg.norm(product - b) <= tol * 1e-2:
            return guess, 0, product
    op = spla.LinearOperator((b.size, b.size), dtype=b.dtype,
                             matvec=lambda v: apply(v.reshape(b.shape)).ravel())
    solver = {"cg": spla.cg, "minres": spla.minres, "gmres": spla.gmres,
              "bicgstab": spla.bicgstab}[method]
    iterations = [0]

    def count(_):
        iterations[0] += 1
    kwargs = dict(rtol=tol * 1e-2 / np.linalg.norm(b), maxiter=maxiter, callback=count)
    if method != "minres":
        kwargs["atol"] = 0.0
    if method == "gmres":
        kwargs["callback_type"] = "legacy"
    if guess is not None:
        kwargs["x0"] = guess.ravel()
    x, _ = solver(op, b.ravel(), **kwargs)
    return x.reshape(b.shape), iterations[0], None


def _split(args, warm_start):
    """(b, the initial guess or None, operands) from the inputs of `linear_solve`."""
    return args[0], args[1] if warm_start else None, list(args[1 + warm_start:])


def _impl(*args, matvec, blocks, warm_start, method, symmetric, tol, maxiter, alpha,
          on_nonconvergence):
    b, guess, operands = _split(args, warm_start)
    if not np.any(b):
        return np.zeros_like(b)
    rows = np.reshape(b, (-1, int(np.prod(b.shape[blocks:], dtype=np.int64))))
    apply = _block_operator(matvec, operands, b.shape, b.dtype, blocks)
    if method in SYMMETRIC_METHODS and not symmetric:
        _check_symmetric(apply, rows.shape, b.dtype, method)
    scale = np.linalg.norm(rows, axis=1)
    smallest = np.min(scale[scale > 0])
    iterations, product = rows.shape[1], None
    with np.errstate(all="ignore"):
        if method == "direct":
            try:
                x = np.linalg.solve(_dense(apply, rows.shape, b.dtype), rows[..., None])[..., 0]
            except np.linalg.LinAlgError:
                raise SingularSystemError(
                    "the linear system of the implicit derivative is singular: the "
                    "Jacobian of the optimality function at the solution is not "
                    "invertible, so the solution is not a differentiable function of "
                    "theta there (e.g. a non-isolated or degenerate solution). Check the "
                    "optimality function, or use diff='unroll' / 'onestep'.") from None
        elif method == "cholesky":
            try:
                factors = np.linalg.cholesky(_dense(apply, rows.shape, b.dtype))
            except np.linalg.LinAlgError:
                raise SolverOptionError(
                    "solve='cholesky' needs a positive definite system, and this one is "
                    "not; use solve='direct' (LU) or 'gmres'") from None
            x = np.stack([scipy.linalg.cho_solve((L, True), r) for L, r in zip(factors, rows)])
        elif method == "neumann":
            x, iterations = _neumann(apply, rows, alpha, tol * smallest, maxiter)
        else:
            x, iterations, product = _krylov(method, apply, rows, guess, tol * smallest,
                                             maxiter)
        if product is None:
            product = apply(x)
        residual = np.max(np.linalg.norm(product - rows, axis=1)
                          / np.where(scale > 0, scale, 1.0))
    if not residual <= tol:
        report_nonconvergence(
            f"the linear solve of the implicit derivative (solve={method!r}) reached a "
            f"relative residual of {residual:.3g} > tol {tol:g} after {iterations} "
            f"iteration(s); the derivative is inaccurate. Raise linear_maxiter, loosen "
            f"linear_tol, or use another solve (e.g. 'direct' for small systems"
            + (", or a smaller alpha: the Neumann series needs the spectrum of alpha*A "
               "in (0, 2)" if method == "neumann" else "") + ").", on_nonconvergence)
    return np.reshape(x, b.shape)


def _shape(b, *args, **params):
    return b


def _jvp(primals, tangents, outs, matvec, warm_start, **params):
    (_, _, operands), (tb, _, t_operands) = _split(primals, warm_start), \
        _split(tangents, warm_start)
    rhs = None if isinstance(tb, Zero) else tb
    moving = [not isinstance(t, Zero) for t in t_operands]
    if any(moving):
        # A' x from the JVP graph of matvec, without the equations only primals need.
        graph, nonzero = jvp_graph_of(matvec, moving + [False])
        if nonzero[0]:
            dAx = eval_graph(graph, [], operands + [outs[0]] + [
                t for t, m in zip(t_operands, moving) if m])[0]
            rhs = -dAx if rhs is None else rhs - dAx
    if rhs is None:
        return [Zero(aval_of(outs[0]))]
    return [linear_solve_p.bind(rhs, *operands, matvec=matvec, warm_start=False, **params)]


def _transpose(cts, *args, matvec, symmetric, warm_start, **params):
    ct, operands = cts[0], _split(args, warm_start)[2]
    if isinstance(ct, Zero):
        return [None] * len(args)
    flipped = matvec if symmetric else transposed_graph_of(
        matvec, [False] * len(operands) + [True])
    return [linear_solve_p.bind(ct, *operands, matvec=flipped, symmetric=symmetric,
                                warm_start=False, **params)] + [None] * (len(args) - 1)


def _batch(args, dims, matvec, blocks, warm_start, **params):
    size, k = batch_size(args, dims), 1 + warm_start
    rhs = [move_batch_axis(a, d, 0, size) for a, d in zip(args[:k], dims[:k])]
    operands = [a if d is None else batch_to_front(a, d) for a, d in zip(args[k:], dims[k:])]
    operand_dims = [None if d is None else 0 for d in dims[k:]]
    batched, _ = batch_graph(matvec, operand_dims + [0], size, [0])
    return linear_solve_p.bind(*rhs, *operands, matvec=batched, blocks=blocks + 1,
                               warm_start=warm_start, **params), 0


linear_solve_p = primitive("linear_solve", _impl, _shape, jvp=_jvp, transpose=_transpose,
                           batch=_batch)
# The linear_solve_p primitive, for code generators:
# linear_solve[matvec, blocks, warm_start, method, symmetric, tol, maxiter, alpha,
# on_nonconvergence] b [guess] *operands -> x with matvec(*operands, x) = b. matvec: closed
# Graph (operands, v) -> A v, linear in v, acting separately on each of the `blocks`
# leading axes of b. With warm_start, guess (shaped like b) starts the Krylov solvers.


def solve_options(solve, symmetric, tol, maxiter, alpha, on_nonconvergence):
    """Validated parameters of `linear_solve_p` (everything but matvec and blocks)."""
    check_choice(solve, METHODS, "solve")
    check_choice(on_nonconvergence, ("warn", "raise", "ignore"), "on_nonconvergence")
    if solve == "neumann" and not alpha > 0:
        raise SolverOptionError(f"solve='neumann' needs a step alpha > 0, got {alpha!r}")
    return dict(method=solve, symmetric=bool(symmetric), tol=float(tol),
                maxiter=int(maxiter), alpha=float(alpha),
                on_nonconvergence=on_nonconvergence)


def solve_flat(matvec, b, operands, options, guess=None):
    """x with A x = b for 1-D b; A = matvec(operands, .), differentiable in b, in the
    operands and in any traced value matvec reads from enclosing code (traced into the
    graph of `linear_solve`, such values become operands of the primitive). A guess
    (e.g. the solution the untraced solver found) starts the Krylov solvers, which then
    stop at once if it already meets the tolerance; it does not change the derivative."""
    avals = [aval_of(o) for o in operands] + [aval_of(b)]
    try:
        graph, consts = trace_closed(lambda *a: [matvec(list(a[:-1]), a[-1])], avals)
    except ConcretizationError as e:
        raise ConcretizationError(
            f"linear_solve traces its matvec once with shapes only (into a graph that "
            f"vmap, jit and the derivative rules transform), so the matvec (and the "
            f"function it differentiates) cannot branch on array values in Python; use "
            f"np.where or chainrule.cond. ({e})") from None
    start = [] if guess is None else [api.stop_gradient(guess)]
    return linear_solve_p.bind(b, *start, *consts, *operands, matvec=graph, blocks=0,
                               warm_start=guess is not None, **options)


def linear_solve(matvec, b, *operands, solve="gmres", symmetric=False, tol=1e-8,
                 maxiter=1000, alpha=1.0, on_nonconvergence="warn"):
    """Solves matvec(x, *operands) = b for x (b and x of the same pytree structure),
    differentiably in b, in the operands and in values matvec closes over. matvec must
    be linear in x and traceable with shapes only (no Python branches on values)."""
    b_flat, unravel = ravel_tree(b)

    def flat_matvec(ops, v):
        return ravel_tree(matvec(unravel(v), *ops))[0]
    dtype = np.result_type(aval_of(b_flat).dtype, np.float64)
    options = solve_options(solve, symmetric, tol, maxiter, alpha, on_nonconvergence)
    return unravel(solve_flat(flat_matvec, b_flat.astype(dtype), list(operands), options))
