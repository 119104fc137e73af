"""Kalman filtering of a linear-Gaussian state-space model, differentiable end to end.

    x_0 ~ N(m0, S0 S0ᵀ),   x_{t+1} = F x_t + w_t,  w_t ~ N(0, Qh Qhᵀ),
    y_t = H x_t + v_t,     v_t ~ N(0, Rh Rhᵀ).

Two filters compute the log marginal likelihood log p(y_0, ..., y_{T-1}):

- `log_likelihood` (the square-root filter): it propagates a factor S of the state
  covariance P = S Sᵀ, with the update and the prediction each one `tria` (R Rᵀ = A Aᵀ).
  Every quantity it returns depends on the factors only through their Gramians, so its
  gradient through `tria`'s Gramian rule is exact even when P is singular (a known
  initial state, a process noise of lower rank than the state), where differentiating
  through plain QR divides by zero. Its Hessian is exact too when that rank is fixed by
  the model's structure (tested against the covariance-form filter). Pass `triangularize=chainrule.linalg.qr_tria` to see
  that happen.
- `covariance_log_likelihood`: the textbook filter on P itself, as a reference.

Noise and initial covariances are given by factors (any number of columns), so a
rank-deficient covariance is simply a factor with few columns, and zero S0 is a known
initial state.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .core.errors import ShapeError
from .core.pytree import register_dataclass
from .linalg import tria

__all__ = ["LinearGaussianModel", "log_likelihood", "covariance_log_likelihood", "simulate"]

LOG_2PI = np.log(2 * np.pi)


@register_dataclass
@dataclass
class LinearGaussianModel:
    """The model's matrices (a pytree: `chainrule.grad` returns one of these).

    F (n, n) transition, Qh (n, k) factor of the process-noise covariance,
    H (d, n) observation, Rh (d, d) factor of the observation-noise covariance (it must
    be invertible), m0 (n,) initial mean, S0 (n, j) factor of the initial covariance."""
    F: np.ndarray
    Qh: np.ndarray
    H: np.ndarray
    Rh: np.ndarray
    m0: np.ndarray
    S0: np.ndarray

    def check(self, ys):
        n = np.shape(self.F)[0]
        d = np.shape(self.H)[0]
        expected = {"F": (n, n), "H": (d, n), "Rh": (d, d), "m0": (n,)}
        for name, shape in expected.items():
            if np.shape(getattr(self, name)) != shape:
                raise ShapeError(f"LinearGaussianModel.{name} has shape "
                                 f"{np.shape(getattr(self, name))}, expected {shape} "
                                 f"(state dimension {n}, observation dimension {d})")
        for name in ("Qh", "S0"):
            if np.ndim(getattr(self, name)) != 2 or np.shape(getattr(self, name))[0] != n:
                raise ShapeError(f"LinearGaussianModel.{name} must be a factor of shape "
                                 f"({n}, k), got {np.shape(getattr(self, name))}")
        if np.ndim(ys) != 2 or np.shape(ys)[1] != d:
            raise ShapeError(f"observations must have shape (T, {d}), got {np.shape(ys)}")


def _gaussian_log_density(residual, scale):
    """log N(residual; 0, scale scaleᵀ), scale square: depends on scale only through
    scale scaleᵀ (a whitening solve and a log-determinant)."""
    white = np.linalg.solve(scale, residual)
    _, log_abs_det = np.linalg.slogdet(scale)
    return -0.5 * (white @ white) - log_abs_det - 0.5 * residual.shape[0] * LOG_2PI


def log_likelihood(model: LinearGaussianModel, ys, triangularize=tria):
    """Log marginal likelihood of observations ys (T, d) by the square-root filter."""
    model.check(ys)
    F, Qh, H, Rh = model.F, model.Qh, model.H, model.Rh
    n, d = np.shape(F)[0], np.shape(H)[0]
    mean, scale = model.m0, triangularize(model.S0)
    zeros = np.zeros((n, d))
    total = 0.0
    for y in ys:
        # Update: tria([[H S, Rh], [S, 0]]) = [[Sy, 0], [G, S']], gain = G Sy⁻¹.
        joint = triangularize(np.concatenate([
            np.concatenate([H @ scale, Rh], axis=1),
            np.concatenate([scale, zeros], axis=1)], axis=0))
        scale_y, cross, scale = joint[:d, :d], joint[d:, :d], joint[d:, d:]
        residual = y - H @ mean
        total = total + _gaussian_log_density(residual, scale_y)
        mean = mean + cross @ np.linalg.solve(scale_y, residual)
        # Predict: S ← tria([F S, Qh]).
        mean = F @ mean
        scale = triangularize(np.concatenate([F @ scale, Qh], axis=1))
    return total


def covariance_log_likelihood(model: LinearGaussianModel, ys):
    """Log marginal likelihood of observations ys (T, d) by the covariance-form filter."""
    model.check(ys)
    F, H = model.F, model.H
    Q, Rn = model.Qh @ model.Qh.T, model.Rh @ model.Rh.T
    mean, cov = model.m0, model.S0 @ model.S0.T
    total = 0.0
    for y in ys:
        innovation_cov = H @ cov @ H.T + Rn
        residual = y - H @ mean
        _, logdet = np.linalg.slogdet(innovation_cov)
        total = total - 0.5 * (residual @ np.linalg.solve(innovation_cov, residual)
                               + logdet + residual.shape[0] * LOG_2PI)
        gain = np.linalg.solve(innovation_cov, H @ cov).T
        mean = mean + gain @ residual
        cov = cov - gain @ innovation_cov @ gain.T
        mean = F @ mean
        cov = F @ cov @ F.T + Q
    return total


def simulate(model: LinearGaussianModel, steps: int, rng):
    """(states (T, n), observations (T, d)) drawn from the model."""
    n, d = np.shape(model.F)[0], np.shape(model.H)[0]
    x = model.m0 + model.S0 @ rng.standard_normal(np.shape(model.S0)[1])
    states, observations = [], []
    for _ in range(steps):
        states.append(x)
        observations.append(model.H @ x + model.Rh @ rng.standard_normal(d))
        x = model.F @ x + model.Qh @ rng.standard_normal(np.shape(model.Qh)[1])
    return np.array(states).reshape(steps, n), np.array(observations).reshape(steps, d)
