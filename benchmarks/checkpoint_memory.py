"""Peak memory and time of a deep network's gradient, with and without `cr.checkpoint`.

The network: LAYERS layers h <- tanh(h @ W_k) on a BATCH x WIDTH input, loss sum(h**2),
gradient with respect to all weights. Reverse mode keeps, per layer, what the backward
pass needs (the layer's input and its tanh derivative). With the layers grouped into
checkpointed blocks of BLOCK layers, only each block's input is kept; a block's
intermediates are recomputed when the backward pass reaches it, so at most one block's
worth is alive at a time.

Each variant runs in a fresh process (same method as `benchmarks.memory`): the resident
set size after building the inputs is the baseline, the derivative is called once to
warm up, the kernel's high-water mark is reset, the derivative is called again, and
the figure is high-water mark minus baseline. Time is the median of a few calls.

    python -m benchmarks.checkpoint_memory
"""
import json
import statistics
import subprocess
import sys
import time

import numpy as np

LAYERS, WIDTH, BATCH, BLOCK = 100, 256, 512, 10
VARIANTS = {"plain": 0, f"checkpoint every {BLOCK} layers": BLOCK}


def make_gradient(block):
    import chainrule as cr

    def layers(h, weights):
        for w in weights:
            h = np.tanh(h @ w)
        return h

    segment = cr.checkpoint(layers) if block else layers
    step = block or LAYERS

    def loss(weights, x):
        h = x
        for start in range(0, LAYERS, step):
            h = segment(h, weights[start:start + step])
        return np.sum(h * h)
    return cr.grad(loss)


def inputs():
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((WIDTH, WIDTH)) / np.sqrt(WIDTH) for _ in range(LAYERS)]
    return weights, rng.standard_normal((BATCH, WIDTH))


def _status_kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(block, repeats=3):
    """Runs in the child process: (peak extra MiB, median seconds, gradient checksum)."""
    gradient = make_gradient(block)
    weights, x = inputs()
    baseline = _status_kib("VmRSS")
    gradient(weights, x)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    grads = gradient(weights, x)
    peak = (_status_kib("VmHWM") - baseline) / 1024
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        gradient(weights, x)
        times.append(time.perf_counter() - start)
    return peak, statistics.median(times), float(sum(np.sum(g) for g in grads))


def main():
    rows = []
    for label, block in VARIANTS.items():
        out = subprocess.run([sys.executable, "-m", "benchmarks.checkpoint_memory",
                              "--child", str(block)], capture_output=True, text=True,
                             check=True).stdout
        rows.append((label, *json.loads(out)))
    (_, base_mib, base_s, base_sum), *others = rows
    for _, _, _, checksum in others:
        assert np.isclose(checksum, base_sum, rtol=1e-9), "checkpointed gradient differs"
    print(f"gradient of a {LAYERS}-layer tanh network, batch {BATCH} x width {WIDTH} "
          f"(weights {LAYERS * WIDTH * WIDTH * 8 / 2 ** 20:.0f} MiB, one activation "
          f"{BATCH * WIDTH * 8 / 2 ** 20:.0f} MiB)")
    print(f"{'variant':<28}{'peak extra MiB':>16}{'x plain':>9}{'time s':>10}{'x plain':>9}")
    for label, mib, seconds, _ in rows:
        print(f"{label:<28}{mib:>16.1f}{mib / base_mib:>9.2f}{seconds:>10.3f}"
              f"{seconds / base_s:>9.2f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(measure(int(sys.argv[2]))))
    else:
        main()
