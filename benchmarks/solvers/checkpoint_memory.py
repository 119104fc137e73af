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

from chainrule import solvers as S

from .diff_modes import hypergradient_fn, make_problem, median_time, peak_memory


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
            fn = hypergradient_fn("gd", problem, k, "unroll", checkpoint=checkpoint)[1]
            grads.append(fn(0.0)[1])
            row.append((peak_memory(lambda: fn(0.0)) / 2 ** 20,
                        median_time(lambda: fn(0.0), args.repeat)))
        agree = abs(grads[1] - grads[0]) <= 1e-10 * abs(grads[0])
        print(f"| {k} | {row[0][0]:.1f} | {row[1][0]:.1f} | {row[0][1]:.3f} | "
              f"{row[1][1]:.3f} | {'yes' if agree else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
