"""Functions whose generated source is kept in the golden files next to this module.
Their line numbers appear in the generated comments: edit with care (and regenerate)."""
import numpy as np


def elementwise(x):
    return np.sum(np.sin(x) * np.cos(x) + x ** 2)


def mlp_loss(params, x, y):
    h = np.tanh(x @ params["w1"] + params["b1"])
    z = h @ params["w2"] + params["b2"]
    m = np.max(z, axis=1, keepdims=True)
    lse = m + np.log(np.sum(np.exp(z - m), axis=1, keepdims=True))
    return np.mean(np.sum(y * (lse - z), axis=1))


def unrolled(A, b):
    x = np.zeros_like(b)
    for _ in range(3):
        x = x - 0.1 * (A.T @ (A @ x - b))
    return np.sum(x ** 2)
