"""The six core workloads (W1-W6), all in float64.

Each workload's function is written once, against the NumPy API. The array namespace
is the parameter of a small factory, ``make(np)``, so that

* ``make(numpy)`` is the plain NumPy function that chainrule and autograd differentiate,
* ``make(jax.numpy)``, ``make(autograd.numpy)`` and ``make(<torch adapter>)`` run the
  very same source on the peers' arrays.

Inside the factories the name ``np`` is that parameter; everywhere else in this module
it is NumPy itself. Every derivative is taken with respect to the first argument.

Each workload also carries its derivative written by hand in NumPy: the floor of the
benchmark and the reference that every implementation must reproduce.
"""

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Workload:
    key: str  # "W1" ... "W6"
    title: str  # short description for the table
    kind: str  # "grad" | "hessian" | "jacobian", with respect to the first argument
    make: Callable  # make(np) -> the function, written against the namespace np
    inputs: Callable  # inputs(rng) -> tuple of NumPy arrays (or dicts of them)
    derivative: Callable  # the derivative written by hand, same arguments as the function
    measure_memory: bool = False  # also report peak memory of each variant


# --- W1: small elementwise ---------------------------------------------------------

W1_SIZE = 10


def make_elementwise(np):
    def elementwise(x):
        return np.sum(np.sin(x) * np.cos(x) + x**2)

    return elementwise


def elementwise_inputs(rng):
    return (rng.standard_normal(W1_SIZE),)


def elementwise_grad(x):
    s, c = np.sin(x), np.cos(x)
    return c * c - s * s + 2.0 * x


# --- W2: MLP with softmax cross-entropy --------------------------------------------

W2_LAYERS = (784, 256, 256, 10)
W2_BATCH = 256


def make_mlp_loss(np):
    def mlp_loss(params, x, y):
        h1 = np.tanh(x @ params["w1"] + params["b1"])
        h2 = np.tanh(h1 @ params["w2"] + params["b2"])
        z = h2 @ params["w3"] + params["b3"]
        m = np.max(z, axis=1, keepdims=True)
        lse = m + np.log(np.sum(np.exp(z - m), axis=1, keepdims=True))
        return np.mean(np.sum(y * (lse - z), axis=1))

    return mlp_loss


def mlp_inputs(rng):
    params = {}
    for i, (fan_in, fan_out) in enumerate(zip(W2_LAYERS[:-1], W2_LAYERS[1:]), start=1):
        params[f"w{i}"] = rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)
        params[f"b{i}"] = 0.1 * rng.standard_normal(fan_out)
    x = rng.standard_normal((W2_BATCH, W2_LAYERS[0]))
    y = np.eye(W2_LAYERS[-1])[rng.integers(0, W2_LAYERS[-1], W2_BATCH)]  # one-hot labels
    return params, x, y


def mlp_loss_grad(params, x, y):
    h1 = np.tanh(x @ params["w1"] + params["b1"])
    h2 = np.tanh(h1 @ params["w2"] + params["b2"])
    z = h2 @ params["w3"] + params["b3"]
    m = np.max(z, axis=1, keepdims=True)
    lse = m + np.log(np.sum(np.exp(z - m), axis=1, keepdims=True))
    # loss = mean_i sum_j y_ij (lse_i - z_ij), and d lse_i / d z_ij = softmax(z)_ij
    dz = (np.exp(z - lse) * np.sum(y, axis=1, keepdims=True) - y) / x.shape[0]
    dh2 = (dz @ params["w3"].T) * (1.0 - h2 * h2)
    dh1 = (dh2 @ params["w2"].T) * (1.0 - h1 * h1)
    return {
        "w1": x.T @ dh1,
        "b1": dh1.sum(axis=0),
        "w2": h1.T @ dh2,
        "b2": dh2.sum(axis=0),
        "w3": h2.T @ dz,
        "b3": dz.sum(axis=0),
    }


# --- W3: Hessian of Rosenbrock -----------------------------------------------------

W3_SIZE = 100


def make_rosenbrock(np):
    def rosenbrock(x):
        return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    return rosenbrock


def rosenbrock_inputs(rng):
    return (rng.standard_normal(W3_SIZE),)


def rosenbrock_hessian(x):
    # Term i, 100 (x[i+1] - x[i]^2)^2 + (1 - x[i])^2, touches only x[i] and x[i+1].
    head, tail = x[:-1], x[1:]
    diagonal = np.zeros_like(x)
    diagonal[:-1] += 1200.0 * head**2 - 400.0 * tail + 2.0
    diagonal[1:] += 200.0
    off_diagonal = -400.0 * head
    return np.diag(diagonal) + np.diag(off_diagonal, 1) + np.diag(off_diagonal, -1)


# --- W4: Jacobian R^200 -> R^200 ---------------------------------------------------

W4_SIZE = 200


def make_tanh_map(np):
    def tanh_map(x, A):
        return np.tanh(A @ x) * x + np.sin(x)

    return tanh_map


def tanh_map_inputs(rng):
    A = rng.standard_normal((W4_SIZE, W4_SIZE)) / np.sqrt(W4_SIZE)
    return rng.standard_normal(W4_SIZE), A


def tanh_map_jacobian(x, A):
    t = np.tanh(A @ x)
    # y_i = t_i x_i + sin(x_i), t = tanh(A x)
    return ((1.0 - t * t) * x)[:, None] * A + np.diag(t + np.cos(x))


# --- W5: unrolled gradient-descent loop --------------------------------------------

W5_SIZE = 50
W5_STEPS = 100
W5_STEP_SIZE = 0.1


def make_unrolled(np):
    def unrolled(b, A, x0):
        x = x0
        for _ in range(W5_STEPS):
            x = x - W5_STEP_SIZE * (A.T @ (A @ x - b))
        return np.sum(x**2)

    return unrolled


def unrolled_inputs(rng):
    A = rng.standard_normal((W5_SIZE, W5_SIZE))
    A /= np.linalg.norm(A, 2)  # spectral norm 1: the iteration matrix I - 0.1 A^T A is a contraction
    return rng.standard_normal(W5_SIZE), A, rng.standard_normal(W5_SIZE)


def unrolled_grad(b, A, x0):
    x = x0
    for _ in range(W5_STEPS):
        x = x - W5_STEP_SIZE * (A.T @ (A @ x - b))
    # Reverse sweep of x_k = x_{k-1} - s A^T (A x_{k-1} - b); the adjoint of x_k needs no x_k.
    x_bar = 2.0 * x
    b_bar = np.zeros_like(b)
    for _ in range(W5_STEPS):
        A_x_bar = A @ x_bar
        b_bar += W5_STEP_SIZE * A_x_bar
        x_bar = x_bar - W5_STEP_SIZE * (A.T @ A_x_bar)
    return b_bar


# --- W6: large, BLAS-bound ---------------------------------------------------------

W6_ROWS, W6_SIZE = 4096, 1024


def make_tanh_layer(np):
    def tanh_layer(W, X):
        return np.sum(np.tanh(X @ W) ** 2)

    return tanh_layer


def tanh_layer_inputs(rng):
    return rng.standard_normal((W6_SIZE, W6_SIZE)) / np.sqrt(W6_SIZE), rng.standard_normal(
        (W6_ROWS, W6_SIZE)
    )


def tanh_layer_grad(W, X):
    t = np.tanh(X @ W)
    return X.T @ (2.0 * t * (1.0 - t * t))


WORKLOADS = {
    w.key: w
    for w in [
        Workload(
            "W1",
            f"elementwise, n={W1_SIZE}",
            "grad",
            make_elementwise,
            elementwise_inputs,
            elementwise_grad,
        ),
        Workload(
            "W2",
            "MLP " + "-".join(map(str, W2_LAYERS)) + f", batch {W2_BATCH}",
            "grad",
            make_mlp_loss,
            mlp_inputs,
            mlp_loss_grad,
        ),
        Workload(
            "W3",
            f"Rosenbrock Hessian, n={W3_SIZE}",
            "hessian",
            make_rosenbrock,
            rosenbrock_inputs,
            rosenbrock_hessian,
        ),
        Workload(
            "W4",
            f"Jacobian R^{W4_SIZE}->R^{W4_SIZE}",
            "jacobian",
            make_tanh_map,
            tanh_map_inputs,
            tanh_map_jacobian,
        ),
        Workload(
            "W5",
            f"unrolled loop, {W5_STEPS} steps, n={W5_SIZE}",
            "grad",
            make_unrolled,
            unrolled_inputs,
            unrolled_grad,
        ),
        Workload(
            "W6",
            f"tanh layer, X {W6_ROWS}x{W6_SIZE}, W {W6_SIZE}x{W6_SIZE}",
            "grad",
            make_tanh_layer,
            tanh_layer_inputs,
            tanh_layer_grad,
            measure_memory=True,
        ),
    ]
}
