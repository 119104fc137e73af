"""Searches elimination orders for the reference tasks and records them as JSON.

    python -m benchmarks.elimination.search_orders [--budget 10] [--seed 0] [task ...]

Each task gets at most `--budget` seconds (default 9.5, under the 10 s aim) of search ("auto": greedy and beam search
seed simulated annealing). A file under `orders/` is only replaced by a cheaper order.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from chainrule.elimination import load_order, plan

from .tasks import TASKS

ORDERS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "orders")


def order_path(name):
    return os.path.join(ORDERS_DIR, f"{name}.json")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="*", default=list(TASKS))
    parser.add_argument("--budget", type=float, default=9.5)
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args(argv)
    os.makedirs(ORDERS_DIR, exist_ok=True)
    for name in opts.tasks:
        task = TASKS[name]
        args = task.args(np.random.default_rng(0))
        p = plan(task.fun, *args, search="auto", budget_s=opts.budget, seed=opts.seed)
        path = order_path(name)
        old = load_order(path)["cost"] if os.path.exists(path) else None
        alphagrad = task.published[4] if task.published else None
        verdict = "kept the saved order" if old is not None and old <= p.cost else "saved"
        if verdict == "saved":
            p.save(path, task=name, seed=opts.seed, budget_s=opts.budget,
                   search_s=round(p.search_s, 2), alphagrad=alphagrad)
        print(f"{name:18s} searched {p.cost:6d} in {p.search_s:5.1f} s "
              f"(forward {p.costs['forward']}, reverse {p.costs['reverse']}, Markowitz "
              f"{p.costs['markowitz']}, AlphaGrad {alphagrad}); {verdict}")


if __name__ == "__main__":
    main()
