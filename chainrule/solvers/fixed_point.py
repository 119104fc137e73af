"""Fixed-point iteration x <- T(x, theta) on a flat vector, optionally with Anderson
acceleration. The optimality condition is x - T(x) = 0, whose Jacobian I - ∂T has its
spectrum in the right half-plane when T is a contraction, as the Neumann series needs;
the onestep map is T from the previous iterate (Jacobian-free backpropagation, Fung et
al. 2022; with Anderson acceleration, T of the previous iterate stands for the mix).

Anderson (type II, memory m) mixes the last m images: x+ = sum_i alpha_i T(x_i), with
alpha minimizing |sum_i alpha_i (T(x_i) - x_i)| subject to sum alpha = 1 (a small
regularized linear system, solved with np.linalg.solve so that unrolling traces it).
"""
from __future__ import annotations

import numpy as np

from .common import Replay, Solver, SolverInfo, per_iteration, record, value_of


def fixed_point_iteration(T, *, anderson=0, regularization=1e-10, maxiter=1000,
                          tol=1e-8, checkpoint=False):
    # Without Anderson, checkpoint=True replays the iteration (`Replay`): the run that
    # records it is untraced, so rematerializing T there would only add tracing work.
    T_per_iteration = per_iteration(T, checkpoint and anderson > 0)

    def run(x, theta, trail=None):
        images, residuals, previous = [], [], x
        for k in range(maxiter + 1):
            image = T_per_iteration(x, theta)
            difference = image - x
            residual = value_of(np.linalg.norm(difference))
            if residual <= tol or k == maxiter:
                break
            previous = x
            record(trail)
            if anderson:
                images = (images + [image])[-anderson:]
                residuals = (residuals + [difference])[-anderson:]
                x = _anderson_mix(images, residuals, regularization)
            else:
                x = image
        return x, SolverInfo(k, residual, residual <= tol), previous

    replay = None if anderson else Replay(lambda x0: x0, lambda x, theta, _: T(x, theta),
                                          lambda x: x)
    return Solver(run, lambda x, theta: x - T(x, theta),
                  lambda last, theta, info: T(last, theta), symmetric=False, replay=replay)


def _anderson_mix(images, residuals, regularization):
    m = len(images)
    if m == 1:
        return images[0]
    G = np.stack(residuals)
    gram = G @ G.T
    scale = value_of(np.trace(gram)) / m
    kkt = np.concatenate([
        np.concatenate([gram + regularization * scale * np.eye(m), np.ones((m, 1))], axis=1),
        np.concatenate([np.ones((1, m)), np.zeros((1, 1))], axis=1)], axis=0)
    rhs = np.concatenate([np.zeros(m), np.ones(1)])
    alpha = np.linalg.solve(kkt, rhs)[:m]
    return alpha @ np.stack(images)
