"""What `cr.jit` costs on its first call, step by step, and the peak memory of
`jit(grad(f))` on W6 against the hand-written gradient.

    python -m benchmarks.jit.first_call_and_memory

First call: tracing (abstract, through the derivative), simplification, and code
generation with compilation, for W1, W2 and W5. Memory: `tracemalloc` peak of one
steady-state call (NumPy allocates its array buffers through the traced allocator),
hand-written NumPy vs `jit(grad)`, on W6.
"""
import time
import tracemalloc

import numpy as np

import chainrule as cr

from ..workloads import WORKLOADS


def first_call(key):
    w = WORKLOADS[key]
    args = w.inputs(np.random.default_rng(0))
    fast = cr.jit(cr.grad(w.make(np)))
    start = time.perf_counter()
    fast(*args)
    total = time.perf_counter() - start
    steps = ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in fast.last_compile_seconds.items())
    print(f"{key}: first call {total * 1e3:.1f} ms, of which {steps} "
          f"(the rest runs the compiled code)")


def peak_mib(fn, args):
    fn(*args)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    fn(*args)
    peak = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    return peak / 2 ** 20


def main():
    for key in ("W1", "W2", "W5"):
        first_call(key)
    w = WORKLOADS["W6"]
    args = w.inputs(np.random.default_rng(0))
    hand, fast = peak_mib(w.derivative, args), peak_mib(cr.jit(cr.grad(w.make(np))), args)
    print(f"W6 peak memory: hand-written {hand:.0f} MiB, jit(grad) {fast:.0f} MiB "
          f"({fast / hand:.2f}x)")


if __name__ == "__main__":
    main()
