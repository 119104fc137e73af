"""Lipschitz constants of networks by automatic differentiation (Virmaux & Scaman, 2018).

The exact Lipschitz constant of even a two-layer ReLU network is NP-hard to compute, so
this module gives bounds on both sides:

- `spectral_norm(f, x_shape)`: the largest singular value of a linear (or affine) map
  given as a function, by power iteration on JᵀJ. The map is linearized once; each step
  is one evaluation of the linear graph (a JVP) and one transposed evaluation (a VJP), so
  no matrix is ever formed. Reports the iterations and the residual ‖JᵀJv - σ²v‖ / σ².
- `autolip(layers)`: the product of the layers' Lipschitz constants (per-layer operator
  norms by `spectral_norm`, activation constants as given).
- `seqlip(layers)`: the tighter bound that treats consecutive affine layers together.
  With SVDs Mᵢ = Uᵢ Sᵢ Vᵢᵀ and activations whose derivatives lie in [0, Lᵢ],

      L(f) ≤ ∏ᵢ Lᵢ max_{σ ∈ {0,1}ⁿ} ‖ S̃ᵢ₊₁ Vᵢ₊₁ᵀ diag(σ) Uᵢ S̃ᵢ ‖,

  S̃ = S for the first and last layers and √S in between (the maximum of a convex
  function over the cube [0,1]ⁿ is at a vertex). Exact by enumeration for small layers;
  greedy coordinate flips (keeping the top singular vectors) for large ones, which
  makes it an estimate rather than a guaranteed bound.
- `lower_bound(f, points)`: the largest Jacobian norm found by gradient ascent from the
  given points (any Jacobian norm of f is a lower bound of its Lipschitz constant).

Networks are sequences of `Dense`, `Conv2D` or `Affine` layers (weights or functions)
and `Activation`s (`relu`, `tanh`, `sigmoid`, ...); `network(layers)` is the function.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .api import grad, jacfwd, jvp, linearize
from .core.errors import ShapeError
from .transforms.jvp import instantiate
from .transforms.transpose import backward_pass

__all__ = ["SpectralNormResult", "LipschitzBound", "Dense", "Conv2D", "Affine",
           "Activation", "relu", "tanh", "sigmoid", "softplus", "network",
           "spectral_norm", "autolip", "seqlip", "frobenius_product", "lower_bound"]


# --------------------------------------------------------------------------- layers

@dataclass
class Dense:
    """x -> weight @ x + bias, on the flattened input (weight: (out, in))."""
    weight: np.ndarray
    bias: np.ndarray | None = None

    @property
    def input_shape(self):
        return (np.shape(self.weight)[1],)

    def __call__(self, x):
        y = self.weight @ np.ravel(x)
        return y if self.bias is None else y + self.bias

    def matrix(self):
        return np.asarray(self.weight)


@dataclass
class Conv2D:
    """2-D convolution (cross-correlation, 'same' output size, stride 1) of an input of
    shape (c_in, h, w) with a kernel (c_out, c_in, kh, kw); padding "circular" or "zeros".
    """
    kernel: np.ndarray
    input_shape: tuple
    bias: np.ndarray | None = None
    padding: str = "circular"

    def __post_init__(self):
        if self.padding not in ("circular", "zeros"):
            raise ValueError(f"Conv2D padding must be 'circular' or 'zeros', got "
                             f"{self.padding!r}")
        if np.ndim(self.kernel) != 4 or len(self.input_shape) != 3 or \
                np.shape(self.kernel)[1] != self.input_shape[0]:
            raise ShapeError(f"Conv2D needs a kernel (c_out, c_in, kh, kw) and an input "
                             f"shape (c_in, h, w) with the same c_in, got kernel "
                             f"{np.shape(self.kernel)} and input {self.input_shape}")

    def __call__(self, x):
        _, kh, kw = np.shape(self.kernel)[1:]
        _, h, w = self.input_shape
        x = np.reshape(x, self.input_shape)
        pad = ((0, 0), (kh // 2, (kh - 1) // 2), (kw // 2, (kw - 1) // 2))
        x = np.pad(x, pad, mode="wrap" if self.padding == "circular" else "constant")
        y = sum(np.einsum("oc,chw->ohw", self.kernel[:, :, i, j], x[:, i:i + h, j:j + w])
                for i in range(kh) for j in range(kw))
        return y if self.bias is None else y + np.reshape(self.bias, (-1, 1, 1))

    def matrix(self):
        return _dense_matrix(self, self.input_shape)


@dataclass
class Affine:
    """An affine map given as a function of an array of shape input_shape."""
    fn: Callable
    input_shape: tuple

    def __call__(self, x):
        return self.fn(np.reshape(x, self.input_shape))

    def matrix(self):
        return _dense_matrix(self.fn, self.input_shape)


@dataclass
class Activation:
    """An elementwise activation whose derivative lies in [0, lipschitz] (what AutoLip
    and SeqLip assume)."""
    fn: Callable
    lipschitz: float = 1.0
    name: str = "activation"

    def __call__(self, x):
        return self.fn(x)


relu = Activation(lambda x: np.maximum(x, 0.0), 1.0, "relu")
tanh = Activation(np.tanh, 1.0, "tanh")
sigmoid = Activation(lambda x: 1 / (1 + np.exp(-x)), 0.25, "sigmoid")
softplus = Activation(lambda x: np.logaddexp(0.0, x), 1.0, "softplus")

LINEAR_LAYERS = (Dense, Conv2D, Affine)
MAX_DENSE_SIZE = 4096


def network(layers):
    """The function x -> layers[-1](...layers[0](x))."""
    layers = list(layers)

    def f(x):
        for layer in layers:
            x = layer(x)
        return x
    return f


def _dense_matrix(fn, input_shape):
    """The matrix of the linear part of an affine map (its Jacobian), flattened."""
    size = int(np.prod(input_shape))
    if size > MAX_DENSE_SIZE:
        raise ShapeError(f"seqlip needs the matrix of each layer; a layer with "
                         f"{size} inputs (more than {MAX_DENSE_SIZE}) is too large to form. "
                         f"Use autolip, which never forms matrices")
    jac = jacfwd(lambda x: np.ravel(fn(np.reshape(x, input_shape))))(np.zeros(size))
    return np.reshape(jac, (-1, size))


# --------------------------------------------------------------------------- power iteration

@dataclass
class SpectralNormResult:
    """value: the estimate of the largest singular value; vector: the right singular
    vector found (unit norm); residual: ‖JᵀJv - σ²v‖ / σ²; converged: residual <= tol."""
    value: float
    vector: np.ndarray
    iterations: int
    residual: float
    converged: bool


def spectral_norm(f, x_shape, tol=1e-6, max_iter=1000, rng=None, at=None):
    """Largest singular value of the Jacobian of f at `at` (default: zeros), i.e. the
    operator 2-norm of f when f is linear or affine, by power iteration on JᵀJ with one
    JVP and one VJP per step. Stops when the relative residual is at most tol or after
    max_iter steps (check `converged`)."""
    x_shape = tuple(int(d) for d in np.atleast_1d(x_shape))
    if tol <= 0 or max_iter < 1:
        raise ValueError(f"spectral_norm needs tol > 0 and max_iter >= 1, got tol={tol}, "
                         f"max_iter={max_iter}")
    point = np.zeros(x_shape) if at is None else np.asarray(at, float)
    if point.shape != x_shape:
        raise ShapeError(f"spectral_norm: the point has shape {point.shape}, expected "
                         f"{x_shape}")
    _, f_lin = linearize(f, point)
    graph = f_lin.graph
    if len(graph.outvars) != 1:
        raise ShapeError("spectral_norm needs a function with a single array output")
    rng = np.random.default_rng(rng)
    v = rng.standard_normal(x_shape)
    v /= np.linalg.norm(v)
    for iteration in range(1, max_iter + 1):
        w = instantiate(backward_pass(graph, [np.asarray(f_lin(v))])[0])
        sq = float(np.vdot(v, w))
        w_norm = np.linalg.norm(w)
        if w_norm == 0:
            return SpectralNormResult(0.0, v, iteration, 0.0, True)
        residual = float(np.linalg.norm(w - sq * v) / sq)
        v = w / w_norm
        if residual <= tol:
            break
    return SpectralNormResult(float(np.sqrt(sq)), v, iteration, residual, residual <= tol)


# --------------------------------------------------------------------------- upper bounds

@dataclass
class LipschitzBound:
    """value: the bound; factors: one number per factor of the product."""
    value: float
    factors: list


def _check_layers(layers):
    layers = list(layers)
    for layer in layers:
        if not isinstance(layer, LINEAR_LAYERS + (Activation,)):
            raise TypeError(f"network layers must be Dense, Conv2D, Affine or Activation, "
                            f"got {type(layer).__name__}; wrap a function as "
                            f"Affine(fn, input_shape) or Activation(fn, lipschitz)")
    if not layers:
        raise ValueError("the network has no layers")
    return layers


def autolip(layers, tol=1e-6, max_iter=1000, rng=0):
    """AutoLip: the product of the layers' Lipschitz constants, each affine layer's by
    power iteration (no matrix formed)."""
    factors = [spectral_norm(layer, layer.input_shape, tol, max_iter, rng).value
               if isinstance(layer, LINEAR_LAYERS) else layer.lipschitz
               for layer in _check_layers(layers)]
    return LipschitzBound(float(np.prod(factors)), factors)


def frobenius_product(layers):
    """The product of the layers' Frobenius norms (activation constants included): the
    crudest upper bound, for comparison."""
    factors = [float(np.linalg.norm(layer.matrix())) if isinstance(layer, LINEAR_LAYERS)
               else layer.lipschitz for layer in _check_layers(layers)]
    return LipschitzBound(float(np.prod(factors)), factors)


def _max_over_patterns(left, right, exact_up_to, keep, max_sweeps):
    """max over σ in {0,1}ⁿ of ‖left diag(σ) right‖₂."""
    n = left.shape[1]
    norm = lambda m: np.linalg.norm(m, 2) if m.size else 0.0
    if n <= exact_up_to:
        return max(norm((left * np.array(s)) @ right)
                   for s in itertools.product((0.0, 1.0), repeat=n))
    left, right = left[:keep], right[:, :keep]
    sigma = np.ones(n)
    current = left @ right
    best = norm(current)
    for _ in range(max_sweeps):
        improved = False
        for i in range(n):
            flipped = current + (1 - 2 * sigma[i]) * np.outer(left[:, i], right[i])
            value = norm(flipped)
            if value > best:
                best, current, sigma[i], improved = value, flipped, 1 - sigma[i], True
        if not improved:
            break
    return best


def seqlip(layers, exact_up_to=12, keep=100, max_sweeps=10):
    """SeqLip for a network that alternates affine layers and activations
    (A₁, act₁, A₂, ..., A_K). Hidden layers with at most `exact_up_to` units are
    maximized exactly over activation patterns, larger ones greedily (keeping the `keep`
    top singular vectors)."""
    layers = _check_layers(layers)
    affine = layers[0::2]
    acts = layers[1::2]
    if len(layers) % 2 == 0 or not all(isinstance(a, LINEAR_LAYERS) for a in affine) \
            or not all(isinstance(a, Activation) for a in acts):
        raise ValueError("seqlip needs layers alternating affine and activation, starting "
                         "and ending with an affine layer: [A1, act, A2, act, ..., AK]")
    svds = [np.linalg.svd(layer.matrix(), full_matrices=False) for layer in affine]
    if len(svds) == 1:
        top = float(svds[0][1][0]) if svds[0][1].size else 0.0
        return LipschitzBound(top, [top])
    last = len(svds) - 1
    factors = []
    for i, act in enumerate(acts):
        u, s, _ = svds[i]
        _, s_next, vt_next = svds[i + 1]
        scale = s if i == 0 else np.sqrt(s)
        scale_next = s_next if i + 1 == last else np.sqrt(s_next)
        left = scale_next[:, None] * vt_next
        right = u * scale
        factors.append(act.lipschitz * _max_over_patterns(left, right, exact_up_to, keep,
                                                          max_sweeps))
    return LipschitzBound(float(np.prod(factors)), factors)


# --------------------------------------------------------------------------- lower bound

def lower_bound(f, points, steps=50, learning_rate=0.1, tol=1e-8, max_iter=200):
    """The largest ‖J_f(x)‖₂ found by normalized gradient ascent on ‖J_f(x) v‖² (v the top
    right singular vector at x) started from each of `points`; a lower bound of the
    Lipschitz constant. Returns (value, point where it was found)."""
    best, best_x = -np.inf, None
    for x in points:
        x = np.array(x, float)
        for step in range(steps + 1):
            top = spectral_norm(f, x.shape, tol, max_iter, rng=step, at=x)
            if top.value > best:
                best, best_x = top.value, x.copy()
            if step == steps:
                break
            g = grad(lambda y: np.sum(jvp(f, (y,), (top.vector,))[1] ** 2))(x)
            g_norm = np.linalg.norm(g)
            if g_norm == 0:
                break
            x = x + learning_rate * (1 + np.linalg.norm(x)) * g / g_norm
    return best, best_x
