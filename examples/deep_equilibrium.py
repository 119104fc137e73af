"""Train a small deep-equilibrium layer on a synthetic regression task.

The hidden state of a batch is the fixed point Z = tanh(W Z + U X + b) (one column per
example); the prediction is v @ Z + c. Gradients of the loss reach W, U and b through
the fixed point: by the implicit function theorem (diff="implicit", a GMRES solve with
the transposed Jacobian of the layer) or by Jacobian-free backpropagation
(diff="onestep", one layer application). W is kept a contraction (spectral norm <= 0.9)
so the fixed point exists and is unique.

    python examples/deep_equilibrium.py
"""
import time

import numpy as np

import chainrule as cr
from chainrule import solvers as S

HIDDEN, BATCH, STEPS = 16, 64, 200


def layer(Z, theta):
    W, U, b, X = theta
    return np.tanh(W @ Z + U @ X + b[:, None])


def loss(params, X, y, diff):
    Z = S.fixed_point(layer, np.zeros((HIDDEN, X.shape[1])),
                      (params["W"], params["U"], params["b"], X), diff=diff, tol=1e-9)
    prediction = params["v"] @ Z + params["c"]
    return np.mean((prediction - y) ** 2)


def init_params(rng):
    return {"W": 0.3 * rng.standard_normal((HIDDEN, HIDDEN)) / np.sqrt(HIDDEN),
            "U": rng.standard_normal((HIDDEN, 2)), "b": np.zeros(HIDDEN),
            "v": rng.standard_normal(HIDDEN) / np.sqrt(HIDDEN), "c": np.zeros(())}


def contract(W, bound=0.9):
    norm = np.linalg.norm(W, 2)
    return W if norm <= bound else W * (bound / norm)


def train(diff, X, y, X_test, y_test, rng):
    params = init_params(rng)
    moments = {k: (np.zeros_like(p), np.zeros_like(p)) for k, p in params.items()}
    value_and_grad = cr.value_and_grad(loss)
    start = time.perf_counter()
    for step in range(1, STEPS + 1):
        batch = rng.choice(X.shape[1], BATCH, replace=False)
        value, grads = value_and_grad(params, X[:, batch], y[batch], diff)
        for k, g in grads.items():                     # Adam
            m, s = moments[k]
            m, s = 0.9 * m + 0.1 * g, 0.999 * s + 0.001 * g * g
            moments[k] = (m, s)
            params[k] = params[k] - 0.02 * (m / (1 - 0.9 ** step)) / (
                np.sqrt(s / (1 - 0.999 ** step)) + 1e-8)
        params["W"] = contract(params["W"])
        if step % 40 == 0:
            test = loss(params, X_test, y_test, "implicit")
            print(f"  [{diff:8s}] step {step:3d}  batch loss {value:.4f}  "
                  f"test loss {test:.4f}  ({time.perf_counter() - start:.1f} s)")
    return params


def main():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (2, 1024))
    y = np.sin(3 * X[0]) * np.cos(2 * X[1])
    X_test, y_test = X[:, 768:], y[768:]
    X, y = X[:, :768], y[:768]
    print(f"baseline test loss (predict the mean): {np.mean((y_test - y.mean()) ** 2):.4f}")
    for diff in ("implicit", "onestep"):
        params = train(diff, X, y, X_test, y_test, np.random.default_rng(1))

    # The one-step (JFB) gradient is a descent direction: compare it with the
    # implicit gradient at the trained parameters.
    g_implicit = cr.grad(loss)(params, X_test, y_test, "implicit")
    g_onestep = cr.grad(loss)(params, X_test, y_test, "onestep")
    flat = lambda g: np.concatenate([np.ravel(g[k]) for k in sorted(g)])
    a, b = flat(g_implicit), flat(g_onestep)
    print(f"cosine(implicit gradient, one-step gradient) = "
          f"{a @ b / np.linalg.norm(a) / np.linalg.norm(b):.3f}")


if __name__ == "__main__":
    main()
