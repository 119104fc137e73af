"""Entropic optimal transport by Sinkhorn's algorithm in the log domain.

For a cost C (n x m), marginals a, b and regularization epsilon, the dual potentials
(f, g) solve f = eps log a - eps LSE_j((g_j - C_ij)/eps) and
g = eps log b - eps LSE_i((f_i - C_ij)/eps); the plan is P = exp((f + g - C)/eps) and
the regularized cost is the dual value <f, a> + <g, b> - eps sum(P) + eps, whose
gradient with respect to C is P (envelope theorem). The iteration runs on g alone,
normalized so that g[-1] = 0: potentials are unique only up to (f + c, g - c), and the
normalization makes the fixed point (and the implicit linear system) nonsingular.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import api
from .common import SolverOptionError
from .interface import fixed_point


class Transport(NamedTuple):
    """The result of `sinkhorn`: regularized cost, plan, potentials, solver info."""
    value: object
    plan: object
    f: object
    g: object
    info: object


def _logsumexp(z, axis):
    shift = api.stop_gradient(np.max(z, axis=axis, keepdims=True))
    return np.log(np.sum(np.exp(z - shift), axis=axis)) + np.squeeze(shift, axis=axis)


def _potential_f(g, C, a, eps):
    return eps * np.log(a) - eps * _logsumexp((g[None, :] - C) / eps, axis=1)


def _sinkhorn_map(g, theta):
    C, a, b, eps = theta
    f = _potential_f(g, C, a, eps)
    g_new = eps * np.log(b) - eps * _logsumexp((f[:, None] - C) / eps, axis=0)
    return g_new - g_new[-1]


def sinkhorn(C, a, b, epsilon, *, diff="implicit", maxiter=2000, tol=1e-9, **options):
    """Entropic OT between histograms a and b (any positive marginals, uniform or not,
    of equal total mass) for cost C; differentiable in C, a, b and epsilon. options as
    for fixed_point."""
    plain = [api.concrete(m) for m in (a, b)]          # None inside jit: not checked
    masses = [None if m is None else float(np.sum(m)) for m in plain]
    if None not in masses and not np.isclose(*masses, rtol=1e-8, atol=0.0):
        raise SolverOptionError(
            f"sinkhorn solves balanced optimal transport: the marginals need the same "
            f"total mass, but sum(a) = {masses[0]:.6g} and sum(b) = {masses[1]:.6g}. "
            f"Normalize them (a / a.sum(), b / b.sum()) or rescale one to the other's "
            f"mass.")
    theta = (C, a, b, epsilon)
    g, info = fixed_point(_sinkhorn_map, np.zeros(np.shape(C)[1]), theta, diff=diff,
                          maxiter=maxiter, tol=tol, return_info=True, **options)
    f = _potential_f(g, C, a, epsilon)
    plan = np.exp((f[:, None] + g[None, :] - C) / epsilon)
    value = np.sum(f * a) + np.sum(g * b) - epsilon * np.sum(plan) + epsilon
    return Transport(value, plan, f, g, info)
