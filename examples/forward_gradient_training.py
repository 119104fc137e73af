"""Train a small classifier with forward gradients and compare with ordinary gradients.

A forward gradient is (∇L · v) v for a random direction v: one forward-mode pass, no
backward pass and no stored intermediates, and an unbiased estimate of ∇L. Its variance
grows with the number of parameters (per coordinate, ‖∇L‖² + (∂ᵢL)² for Gaussian directions), so
it tolerates smaller learning rates or needs several directions per step. This example
fits a 2-16-1 tanh network (65 parameters) to two overlapping half-moons with each
method at its best learning rate from a small grid and prints the loss curves.

    python examples/forward_gradient_training.py
"""
import numpy as np

import chainrule as cr


def moons(n, rng):
    t = rng.uniform(0, np.pi, n)
    upper = np.stack([np.cos(t), np.sin(t)], axis=1)
    lower = np.stack([1 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    labels = rng.integers(0, 2, n)
    x = np.where(labels[:, None] == 1, upper, lower) + 0.3 * rng.standard_normal((n, 2))
    return x, 2.0 * labels - 1.0


def loss(params, x, y):
    h = np.tanh(x @ params["w1"] + params["b1"])
    margin = y * (h @ params["w2"] + params["b2"])
    return np.mean(np.logaddexp(0.0, -margin))


def accuracy(params, x, y):
    h = np.tanh(x @ params["w1"] + params["b1"])
    return np.mean(np.sign(h @ params["w2"] + params["b2"]) == y)


def train(gradient, params, x, y, learning_rate, steps):
    history = []
    for step in range(steps + 1):
        if step % (steps // 5) == 0:
            history.append((step, loss(params, x, y), accuracy(params, x, y)))
        g = gradient(params, x, y)
        params = {k: params[k] - learning_rate * g[k] for k in params}
    return params, history


def main():
    rng = np.random.default_rng(0)
    x, y = moons(200, rng)
    init = {"w1": rng.standard_normal((2, 16)), "b1": np.zeros(16),
            "w2": rng.standard_normal(16) / 4, "b2": np.zeros(())}
    n_params = sum(v.size for v in init.values())
    steps, rates = 300, (0.1, 0.3, 1.0, 3.0, 10.0)
    methods = {
        "reverse-mode gradient (1 VJP a step)": lambda: cr.grad(loss),
        "forward gradient, 1 direction (1 JVP a step)": lambda: cr.forward_grad(loss, 1),
        "forward gradient, 8 directions (8 JVPs a step)":
            lambda: cr.forward_grad(loss, 1, num_directions=8),
    }
    print(f"2-16-1 tanh network, {n_params} parameters, 200 points, {steps} steps of "
          f"gradient descent; the best of the learning rates {rates} for each method\n")
    summary = {}
    for name, make in methods.items():
        results = []
        for lr in rates:
            _, history = train(make(), init, x, y, lr, steps)
            final = history[-1][1]
            results.append((final if np.isfinite(final) else np.inf, lr, history))
        final, lr, history = min(results, key=lambda r: r[0])
        summary[name] = final
        print(f"{name}: best learning rate {lr}")
        for step, value, acc in history:
            print(f"  step {step:4d}  loss {value:7.4f}  accuracy {acc:5.1%}")
        unstable = [r[1] for r in results if not np.isfinite(r[0]) or r[0] > history[0][1]]
        if unstable:
            print(f"  diverged or got worse at learning rate(s) {unstable}")
    print("\nfinal loss at the best rate: " + "; ".join(
        f"{name.split(' (')[0]} {value:.4f}" for name, value in summary.items()))


if __name__ == "__main__":
    main()
