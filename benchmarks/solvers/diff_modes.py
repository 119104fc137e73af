"""Unrolled, implicit and one-step derivatives of solvers: time, peak memory and error
against the number of solver iterations, with a plot of error versus time.

Two hypergradient problems with d parameters (default 10^4), each the derivative of a
validation loss with respect to log(lambda) through w*(lambda) = argmin training loss:

- newton: L2-regularized logistic regression solved by Newton's method with CG
  directions (a Newton-type solver: one-step is exact in the limit);
- gd: ridge regression solved by gradient descent with step 1/L (a linearly
  convergent solver: one-step stays biased).

For each iteration budget k the script times the solver alone (no derivative) and the
value-and-hypergradient of each diff mode (median CPU time of `--repeat` runs), measures the
peak memory of each with tracemalloc in a separate run (NumPy reports its buffers to
tracemalloc), and compares the hypergradient with a reference (implicit at a tightly
converged solution; for ridge also checked against the closed form
dw/dlambda = -H^-1 w*). It prints a table and writes a PNG of relative error versus
time (matplotlib, if installed).

    OMP_NUM_THREADS=1 python -m benchmarks.solvers.diff_modes [--dim 10000] [--quick]
        [--out file.png]

Times are CPU times of the process; with one BLAS thread (OMP_NUM_THREADS=1) they do
not depend on what else runs on the machine.
"""
from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

import chainrule as cr
from chainrule import solvers as S

MODES = ("unroll", "implicit", "onestep")


def make_problem(kind, dim, samples, rng):
    X = rng.standard_normal((2 * samples, dim))
    w_true = rng.standard_normal(dim) / np.sqrt(dim)
    if kind == "newton":
        X = X / np.sqrt(dim)
        y = np.where(X @ w_true + 0.3 * rng.standard_normal(2 * samples) > 0, 1.0, -1.0)
        loss = lambda w, X, y: np.mean(np.logaddexp(0.0, -y * (X @ w)))
    else:
        y = X @ w_true + 0.1 * rng.standard_normal(2 * samples)
        loss = lambda w, X, y: 0.5 * np.mean((X @ w - y) ** 2)
    return loss, X[:samples], y[:samples], X[samples:], y[samples:]


def hypergradient_fn(kind, problem, iterations, diff, tol=0.0, checkpoint=False):
    loss, X, y, X_val, y_val = problem
    data_lipschitz = np.linalg.norm(X, 2) ** 2 / X.shape[0]

    def objective(w, theta):
        log_lam, X, y = theta
        return loss(w, X, y) + 0.5 * np.exp(log_lam) * np.sum(w * w)

    def solve(log_lam):
        common = dict(diff=diff, maxiter=iterations, tol=tol, on_nonconvergence="ignore",
                      checkpoint=checkpoint)
        if kind == "newton":
            return S.minimize(objective, np.zeros(X.shape[1]), (log_lam, X, y),
                              method="newton", line_search=False, solve="cg",
                              linear_tol=1e-10, **common)
        step = 1 / (data_lipschitz + np.exp(cr.concrete(log_lam)))
        return S.minimize(objective, np.zeros(X.shape[1]), (log_lam, X, y), method="gd",
                          step_size=step, **common)

    validation = lambda log_lam: loss(solve(log_lam), X_val, y_val)
    return solve, cr.value_and_grad(validation)


def ridge_closed_form(problem, log_lam):
    loss, X, y, X_val, y_val = problem
    n, lam = X.shape[0], np.exp(log_lam)
    # H = X'X/n + lam I; solves with H through the n x n system (Woodbury).
    small = np.linalg.cholesky(lam * np.eye(n) + X @ X.T / n)
    H_solve = lambda v: (v - X.T @ np.linalg.solve(
        small.T, np.linalg.solve(small, X @ v)) / n) / lam
    w = H_solve(X.T @ y / n)
    dw = -H_solve(w) * lam                       # d w / d log(lambda)
    return (X_val.T @ (X_val @ w - y_val) / X_val.shape[0]) @ dw


def median_time(fn, repeat):
    """Median CPU time of this process (robust to other processes on the machine)."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def peak_memory(fn):
    tracemalloc.start()
    tracemalloc.reset_peak()
    baseline = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1] - baseline
    tracemalloc.stop()
    return peak


def run(kind, dim, samples, budgets, repeat, log_lam):
    problem = make_problem(kind, dim, samples, np.random.default_rng(0))
    _, reference_grad = hypergradient_fn(kind, problem, 5000 if kind == "gd" else 30,
                                         "implicit", tol=1e-12)
    reference = reference_grad(log_lam)[1]
    if kind == "gd":
        closed = ridge_closed_form(problem, log_lam)
        print(f"[{kind}] reference {reference:+.12e}, closed form {closed:+.12e}")
    rows = []
    for k in budgets:
        solve, _ = hypergradient_fn(kind, problem, k, "unroll")
        solver_time = median_time(lambda: solve(log_lam), repeat)
        for diff in MODES:
            _, value_and_grad = hypergradient_fn(kind, problem, k, diff)
            grad = value_and_grad(log_lam)[1]
            seconds = median_time(lambda: value_and_grad(log_lam), repeat)
            memory = peak_memory(lambda: value_and_grad(log_lam))
            rows.append(dict(kind=kind, iterations=k, diff=diff, seconds=seconds,
                             solver_seconds=solver_time, memory=memory,
                             error=abs(grad - reference) / abs(reference)))
            print(f"[{kind}] k={k:4d} {diff:8s} time {seconds:8.3f} s "
                  f"({seconds / solver_time:5.2f}x solver {solver_time:.3f} s)  "
                  f"peak {memory / 2**20:8.1f} MiB  rel. error {rows[-1]['error']:.2e}",
                  flush=True)
    return rows


def plot(rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullFormatter
    except ImportError:
        print("matplotlib is not installed: no plot written")
        return
    kinds = sorted({r["kind"] for r in rows}, reverse=True)
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 4.2))
    axes = np.atleast_1d(axes)
    for ax, kind in zip(axes, kinds):
        for diff, marker in zip(MODES, "os^"):
            pts = [r for r in rows if r["kind"] == kind and r["diff"] == diff]
            ax.loglog([r["seconds"] for r in pts], [max(r["error"], 1e-16) for r in pts],
                      marker=marker, label=diff)
        solver = sorted({(r["iterations"], r["solver_seconds"]) for r in rows
                         if r["kind"] == kind})
        for k, seconds in solver:
            ax.axvline(seconds, color="0.85", lw=0.8, zorder=0)
        ax.set_title({"newton": "logistic regression, Newton-CG",
                      "gd": "ridge regression, gradient descent"}[kind])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("CPU time of value + hypergradient (s); grey: solver alone")
        ax.set_ylabel("relative error of the hypergradient")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    print(f"wrote {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes, few budgets")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).with_name("diff_modes.png"))
    args = parser.parse_args(argv)
    if args.quick:
        args.dim, args.samples, args.repeat = 2000, 100, 1
    newton_budgets = [1, 2, 3, 4, 6] if args.quick else [1, 2, 3, 4, 5, 6, 8]
    gd_budgets = [10, 40, 160] if args.quick else [10, 20, 40, 80, 160, 320]
    warnings.simplefilter("ignore", S.NonConvergenceWarning)
    rows = run("newton", args.dim, args.samples, newton_budgets, args.repeat, np.log(1e-3))
    rows += run("gd", args.dim, args.samples, gd_budgets, args.repeat, np.log(1.0))
    plot(rows, args.out)


if __name__ == "__main__":
    main()
