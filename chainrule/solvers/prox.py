"""Proximal operators and projections, written with traceable NumPy calls.

Every operator has the signature `prox(x, param, step)` and returns
argmin_z  step * g(z; param) + ½ |z - x|², where g is the function named (for a
projection g is the indicator of the set, and step does not matter). `param` may be
differentiated; `step` is a float.

Derivatives are conservative Jacobians (Bolte & Pauwels): at a kink every operator
returns an element of the Clarke Jacobian and never NaN. Soft thresholding has slope
exactly 0 strictly inside the threshold (so lasso derivatives vanish off the support);
at the threshold itself, and at the faces of a box, the tie convention of np.maximum /
np.minimum gives 1/2.
"""
from __future__ import annotations

import numpy as np


def _soft_threshold(x, threshold):
    return np.sign(x) * np.maximum(np.abs(x) - threshold, 0.0)


def l1(x, lam, step=1.0):
    """g = lam * |z|_1: soft thresholding at step * lam."""
    return _soft_threshold(x, step * lam)


def squared_l2(x, lam, step=1.0):
    """g = lam/2 * |z|²: shrinkage by 1 / (1 + step * lam)."""
    return x / (1.0 + step * lam)


def l2(x, lam, step=1.0):
    """g = lam * |z|_2 (group lasso): block soft thresholding; maps a ball to 0."""
    norm = np.sqrt(np.sum(x * x))
    return x * (np.maximum(norm - step * lam, 0.0) / np.maximum(norm, step * lam))


def elastic_net(x, lams, step=1.0):
    """g = l1 * |z|_1 + l2/2 * |z|², lams = (l1, l2)."""
    l1_weight, l2_weight = lams
    return _soft_threshold(x, step * l1_weight) / (1.0 + step * l2_weight)


def box(x, bounds, step=1.0):
    """Projection onto {lower <= z <= upper}, bounds = (lower, upper)."""
    lower, upper = bounds
    return np.minimum(np.maximum(x, lower), upper)


def nonnegative(x, param=None, step=1.0):
    """Projection onto the nonnegative orthant."""
    return np.maximum(x, 0.0)


def simplex(x, radius=1.0, step=1.0):
    """Projection onto {z >= 0, sum z = radius}: z = max(x - tau, 0), where the
    threshold tau = max_k (sum of the k largest entries - radius) / k."""
    largest_first = -np.sort(-x)
    k = np.arange(1, x.shape[0] + 1)
    tau = np.max((np.cumsum(largest_first) - radius) / k)
    return np.maximum(x - tau, 0.0)


def l2_ball(x, radius=1.0, step=1.0):
    """Projection onto {|z|_2 <= radius}."""
    norm = np.sqrt(np.sum(x * x))
    return x * (radius / np.maximum(norm, radius))
