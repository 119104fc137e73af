"""Benchmarks of the Lipschitz and square-root Kalman parts (issue 8), float64.

1. Spectral norm by power iteration (one JVP and one VJP per step, no matrix formed)
   against the exact value: a 512x512 dense layer (exact: NumPy's SVD) and a 2-D
   circular convolution with 64 channels on 32x32 images, kernel 3x3 (exact: the SVDs of
   the kernel's 2-D DFT at each of the 1024 frequencies; the 65536x65536 matrix is never
   formed). Time and relative error at two tolerances.
2. Gradient of a Kalman filter's log-likelihood, 1000 steps, state dimension 10,
   observation dimension 3, with respect to all model matrices: the square-root filter
   (through `tria`) against the covariance-form filter, both differentiated by chainrule,
   eagerly and compiled with `chainrule.jit`; time and the largest difference between
   the gradients.

    python -m benchmarks.lipschitz_kalman [--quick]

Times are medians of a few runs on this machine; --quick uses smaller problems (a smoke
test, numbers not meaningful).
"""
import argparse
import statistics
import time

import numpy as np

import chainrule as cr
from chainrule import lipschitz as lip
from chainrule.kalman import (LinearGaussianModel, covariance_log_likelihood,
                              log_likelihood, simulate)


def timed(call, repeats):
    """(last result, median seconds) over `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def circular_conv_norm(kernel, h, w):
    c_out, c_in, kh, kw = kernel.shape
    padded = np.zeros((c_out, c_in, h, w))
    padded[:, :, :kh, :kw] = kernel
    blocks = np.fft.fft2(padded).transpose(2, 3, 0, 1)
    return np.max(np.linalg.svd(blocks, compute_uv=False))


def spectral_rows(quick):
    rng = np.random.default_rng(0)
    n, channels, size = (64, 8, 8) if quick else (512, 64, 32)
    weight = rng.standard_normal((n, n)) / np.sqrt(n)
    kernel = rng.standard_normal((channels, channels, 3, 3)) / np.sqrt(9 * channels)
    conv = lip.Conv2D(kernel, (channels, size, size))
    cases = [
        (f"dense {n}x{n}", lip.Dense(weight), (n,),
         lambda: np.linalg.svd(weight, compute_uv=False)[0], "SVD"),
        (f"conv2d {channels}ch {size}x{size} 3x3", conv, conv.input_shape,
         lambda: circular_conv_norm(kernel, size, size), "DFT + SVDs"),
    ]
    rows = []
    for name, layer, shape, exact_fn, exact_name in cases:
        exact, t_exact = timed(exact_fn, 3)
        for tol in (1e-2, 1e-3):
            res, t_power = timed(lambda: lip.spectral_norm(layer, shape, tol=tol,
                                                           max_iter=20000), 3 if quick else 1)
            rows.append((name, tol, res.iterations, res.residual, t_power,
                         abs(res.value - exact) / exact, exact_name, t_exact))
    return rows


def kalman_model(rng, n, d):
    """A stable random model with rank-deficient process noise and a known initial
    state (as in the tests), where the plain-QR square-root filter has no gradient."""
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return LinearGaussianModel(F=0.95 * q, Qh=0.3 * rng.standard_normal((n, n // 2)),
                               H=rng.standard_normal((d, n)),
                               Rh=0.5 * np.eye(d), m0=rng.standard_normal(n),
                               S0=np.zeros((n, n)))


def kalman_rows(quick):
    rng = np.random.default_rng(1)
    steps, n, d = (50, 4, 2) if quick else (1000, 10, 3)
    model = kalman_model(rng, n, d)
    _, ys = simulate(model, steps, rng)
    rows = []
    grads = {}
    for name, fn in (("square-root (tria)", log_likelihood),
                     ("covariance form", covariance_log_likelihood)):
        _, t_value = timed(lambda: fn(model, ys), 1 if not quick else 3)
        g, t_grad = timed(lambda: cr.grad(fn)(model, ys), 1 if not quick else 3)
        compiled = cr.jit(cr.grad(fn))
        g_jit, t_compile = timed(lambda: compiled(model, ys), 1)
        _, t_jit = timed(lambda: compiled(model, ys), 3)
        grads[name] = cr.tree_flatten(g)[0]
        grads[name + " jit"] = cr.tree_flatten(g_jit)[0]
        rows.append((name, t_value, t_grad, t_compile, t_jit))
    reference = grads["covariance form"]
    scale = max(np.max(np.abs(b)) for b in reference)
    diff = max(np.max(np.abs(a - b)) for leaves in grads.values()
               for a, b in zip(leaves, reference)) / scale
    return steps, n, d, rows, diff


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small problems, smoke test")
    quick = parser.parse_args().quick
    print("## Spectral norm: power iteration through JVP/VJP vs exact\n")
    print("| operator | tol | iterations | residual | power iteration | rel. error "
          "| exact by | exact time |")
    print("|---|---|---|---|---|---|---|---|")
    for name, tol, its, resid, t_power, err, exact_name, t_exact in spectral_rows(quick):
        print(f"| {name} | {tol:g} | {its} | {resid:.1e} | {t_power * 1e3:.1f} ms | "
              f"{err:.1e} | {exact_name} | {t_exact * 1e3:.1f} ms |")
    steps, n, d, rows, diff = kalman_rows(quick)
    print(f"\n## Kalman log-likelihood gradient: {steps} steps, state {n}, "
          f"observations {d}\n")
    print("| filter | log-likelihood | gradient (all model matrices), eager | "
          "jit: first call | jit: later calls |")
    print("|---|---|---|---|---|")
    for name, t_value, t_grad, t_compile, t_jit in rows:
        print(f"| {name} | {t_value:.3f} s | {t_grad:.3f} s ({t_grad / t_value:.1f}x the "
              f"value) | {t_compile:.2f} s | {t_jit:.3f} s |")
    print(f"\nsquare-root / covariance-form gradient time: eager "
          f"{rows[0][2] / rows[1][2]:.2f}x, jit {rows[0][4] / rows[1][4]:.2f}x; largest "
          f"difference of the other gradients from the covariance form's eager one: "
          f"{diff:.1e} of its largest entry")


if __name__ == "__main__":
    main()
