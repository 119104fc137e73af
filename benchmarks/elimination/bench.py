"""Times cross-country Jacobians of the reference tasks against JAX.

    python -m benchmarks.elimination.bench [--batches 1,512,65536] [--quick]
                                           [--markdown benchmarks/elimination/RESULTS.md]

For every task and batch size: the generated code of chainrule's forward, reverse,
Markowitz and searched orders (the saved orders under `orders/`), against JAX's
`jit(vmap(jacfwd(f)))` and `jit(vmap(jacrev(f)))` in float64 (when JAX is installed),
timed in interleaved rounds (best time per variant).
The JAX functions are the very same task functions with `jax.numpy` in place of NumPy.
Each variant's result is checked against JAX's forward mode before it is timed
(where both are finite: g leaves its domain at some outputs); JAX's
compile time and chainrule's planning time are reported apart from the steady state.
"""
from __future__ import annotations

import argparse
import sys
import time
import types

import numpy as np

from benchmarks.timing import first_call
from chainrule.elimination import load_order, plan

from . import tasks as task_module
from .search_orders import order_path
from .tasks import TASKS

ORDERS = ["forward", "reverse", "markowitz", "searched"]

#: Tensor programs run their generated code under chainrule's vmap, slice by slice.
#: The encoder's Jacobian has 1,216 entries per element (0.6 GB at batch 65536, and as
#: much again for each JAX variant), and a call takes ~1 s at 8192, so its batch is capped.
MAX_BATCH = {"TransformerEncoder": 8192}

#: Calls slower than this are timed in SLOW_ROUNDS rounds only.
SLOW_CALL_S, SLOW_ROUNDS = 0.5, 3


def with_array_module(fun, xp, **names):
    """fun with every NumPy call of the tasks module made on `xp` instead, and the
    module's other global `names` replaced (the task's own `erf` by JAX's)."""
    env = dict(vars(task_module))
    env["np"] = xp
    env.update(names)
    for name, obj in list(env.items()):
        if isinstance(obj, types.FunctionType) and obj.__module__ == task_module.__name__:
            env[name] = types.FunctionType(obj.__code__, env, obj.__name__, obj.__defaults__)
    return env[fun.__name__]


def jax_variants(fun, n_args):
    try:
        import jax
    except ImportError:
        return {}
    import jax.scipy.special

    jax.config.update("jax_enable_x64", True)
    jfun = with_array_module(fun, jax.numpy, _erf=jax.scipy.special.erf)
    nums = tuple(range(n_args))
    return {"jax jit(vmap(jacfwd))": jax.jit(jax.vmap(jax.jacfwd(jfun, argnums=nums))),
            "jax jit(vmap(jacrev))": jax.jit(jax.vmap(jax.jacrev(jfun, argnums=nums)))}


def _leaves(jac):
    if isinstance(jac, (list, tuple)):
        return [leaf for part in jac for leaf in _leaves(part)]
    return [jac]


def _as_array(jac):
    """All blocks, each flattened per batch element, side by side."""
    return np.concatenate([np.reshape(np.asarray(b), (np.shape(b)[0], -1))
                           for b in _leaves(jac)], axis=1)


def _ready(out):
    for b in _leaves(out):
        b.block_until_ready()
    return out


def interleaved_best(variants, rounds, min_sample_s=2e-3):
    """Best (minimum) seconds per call of each variant over `rounds` rounds; every
    round times every variant once, so load from other processes hits all alike."""
    number = {}
    for label, call in variants.items():
        _, once = first_call(call)
        number[label] = max(1, int(min_sample_s / max(once, 1e-9)))
        if once > SLOW_CALL_S:
            rounds = min(rounds, SLOW_ROUNDS)
    best = {label: float("inf") for label in variants}
    for _ in range(rounds):
        for label, call in variants.items():
            start = time.perf_counter()
            for _ in range(number[label]):
                call()
            best[label] = min(best[label], (time.perf_counter() - start) / number[label])
    return best


def run(batches, rounds, names, out=sys.stderr):
    rows = []
    for name in names:
        task = TASKS[name]
        args0 = task.args(np.random.default_rng(0))
        plans, plan_s = {}, {}
        for order in ORDERS:
            chosen = load_order(order_path(name)) if order == "searched" else order
            start = time.perf_counter()
            plans[order] = plan(task.fun, *args0, order=chosen)
            plan_s[order] = time.perf_counter() - start
        jax_fns = jax_variants(task.fun, len(args0))
        for batch in [b for b in batches if b <= MAX_BATCH.get(name, b)]:
            args = task.args(np.random.default_rng(1), (batch,))
            reference, jax_first, variants = None, {}, {}
            for label, fn in jax_fns.items():
                call = (lambda fn=fn: _ready(fn(*args)))
                result, jax_first[label] = first_call(call)
                if reference is None:
                    reference = _as_array(result)
                variants[label] = call
            for order, p in plans.items():
                variants[order] = (lambda p=p: p.blocks(*args))
            for label, call in variants.items():
                if reference is not None:
                    got = _as_array(call())
                    ok = np.isfinite(reference) & np.isfinite(got)
                    assert np.allclose(got[ok], reference[ok], rtol=1e-8, atol=1e-9), \
                        f"{name} {label} batch {batch}: wrong Jacobian"
            best = interleaved_best(variants, rounds)
            for label, seconds in best.items():
                cost = plans[label].cost if label in plans else None
                extra = plan_s.get(label) if label in plans else jax_first.get(label)
                rows.append((name, batch, label, cost, seconds, extra))
                print(f"{name:18s} {batch:6d} {label:24s} {seconds * 1e3:10.3f} ms",
                      file=out, flush=True)
    return rows


def markdown(rows, batches):
    lines = ["# Cross-country elimination: multiplications and time", "",
             "Generated by `python -m benchmarks.elimination.bench`; float64, one process; "
             "times are the best per-call time (ms) of the whole batched Jacobian over "
             "interleaved rounds (every round times every variant, so load from other "
             "processes on the machine hits all alike), with the first call (planning "
             "for chainrule, tracing + compiling for JAX) apart. `mults` is the multiplication count of the order under the "
             "published cost model (per Jacobian, one batch element).", ""]
    head = "| task | variant | mults | " + " | ".join(f"batch {b} (ms)" for b in batches) \
        + " | first call (s) |"
    lines += [head, "|" + "---|" * (4 + len(batches))]
    by_key = {}
    for name, batch, label, cost, median, extra in rows:
        by_key.setdefault((name, label), {"cost": cost, "extra": extra})[batch] = median
    for (name, label), rec in by_key.items():
        cells = [f"{rec[b] * 1e3:.3f}" if b in rec else "n/a" for b in batches]
        cost = "" if rec["cost"] is None else str(rec["cost"])
        lines.append(f"| {name} | {label} | {cost} | " + " | ".join(cells)
                     + f" | {rec['extra']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,512,65536")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--only", default=",".join(TASKS), help="comma-separated tasks")
    parser.add_argument("--markdown")
    opts = parser.parse_args(argv)
    batches = [int(b) for b in opts.batches.split(",")]
    rows = run(batches, 3 if opts.quick else opts.rounds, opts.only.split(","))
    text = markdown(rows, batches)
    if opts.markdown:
        with open(opts.markdown, "w") as fh:
            fh.write(text)
    print(text)


if __name__ == "__main__":
    main()
