"""Peak memory of unrolled reverse mode through gradient descent, with and without
`checkpoint=True`, against the number of iterations.

The problem is the ridge hypergradient of `diff_modes.py` (d = 10^4 parameters by
default): the derivative of a validation loss with respect to log(lambda) through k
gradient-descent steps. Memory is the tracemalloc peak of one value-and-gradient call
above what was allocated before it (the data is not counted); time is the median CPU
time of `--repeat` calls.

    OMP_NUM_THREADS=1 python -m benchmarks.solvers.checkpoint_memory [--dim 10000]
"""
from __future__ import annotations

import argparse
import warnings

import numpy as np

import chainrule as cr
from chainrule import solvers as S

from .diff_modes import make_problem, median_time, peak_memory


def value_and_hypergradient(problem, iterations, checkpoint):
    loss, X, y, X_val, y_val = problem
    step = 1 / (np.linalg.norm(X, 2) ** 2 / X.shape[0] + 1.0)

    def objective(w, theta):
        log_lam, X, y = theta
        return loss(w, X, y) + 0.5 * np.exp(log_lam) * np.sum(w * w)

    def validation(log_lam):
        w = S.minimize(objective, np.zeros(X.shape[1]), (log_lam, X, y), method="gd",
                       step_size=step, diff="unroll", maxiter=iterations, tol=0.0,
                       on_nonconvergence="ignore", checkpoint=checkpoint)
        return loss(w, X_val, y_val)
    return cr.value_and_grad(validation)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--budgets", type=int, nargs="+", default=[10, 20, 40, 80, 160, 320])
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", S.NonConvergenceWarning)
    problem = make_problem("gd", args.dim, args.samples, np.random.default_rng(0))
    print("| k | unroll MiB | checkpoint MiB | unroll s | checkpoint s | gradients agree |")
    print("|---|---|---|---|---|---|")
    for k in args.budgets:
        row, grads = [], []
        for checkpoint in (False, True):
            fn = value_and_hypergradient(problem, k, checkpoint)
            grads.append(fn(0.0)[1])
            row.append((peak_memory(lambda: fn(0.0)) / 2 ** 20,
                        median_time(lambda: fn(0.0), args.repeat)))
        agree = abs(grads[1] - grads[0]) <= 1e-10 * abs(grads[0])
        print(f"| {k} | {row[0][0]:.1f} | {row[1][0]:.1f} | {row[0][1]:.3f} | "
              f"{row[1][1]:.3f} | {'yes' if agree else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
