"""Fit a linear-Gaussian state-space model by gradient ascent on the log-likelihood of a
square-root Kalman filter.

The model is a damped oscillator observed through its position: a known initial state
(zero initial covariance) and process noise that drives only the velocity, so the state
covariance is singular at every step. The square-root filter triangularizes with
`chainrule.linalg.tria`, whose derivative goes through the Gramian; the gradient is exact
and agrees with the covariance-form filter's, while the same filter differentiated through
plain QR produces NaN.

    python examples/kalman_fit.py
"""
import numpy as np

import chainrule as cr
from chainrule.kalman import (LinearGaussianModel, covariance_log_likelihood,
                              log_likelihood, simulate)
from chainrule.linalg import qr_tria

DT = 0.1


def oscillator(params):
    """The model for params = (log frequency, log damping, log process noise,
    log observation noise)."""
    freq, damp, q, r = np.exp(params[0]), np.exp(params[1]), np.exp(params[2]), np.exp(params[3])
    zero, one = 0.0 * freq, 1.0 + 0.0 * freq
    F = np.stack([np.stack([one, DT * one]),
                  np.stack([-DT * freq ** 2, one - DT * damp])])
    Qh = np.reshape(np.stack([zero, q * np.sqrt(DT)]), (2, 1))
    return LinearGaussianModel(F=F, Qh=Qh, H=np.array([[1.0, 0.0]]),
                               Rh=np.reshape(r, (1, 1)), m0=np.array([1.0, 0.0]),
                               S0=np.zeros((2, 2)))


def main():
    rng = np.random.default_rng(0)
    truth = np.log(np.array([2.0, 0.3, 0.5, 0.1]))
    _, ys = simulate(oscillator(truth), 300, rng)

    loglik = lambda p: log_likelihood(oscillator(p), ys)
    start = np.log(np.array([1.0, 1.0, 1.0, 0.5]))
    g_sqrt = cr.grad(loglik)(start)
    g_cov = cr.grad(lambda p: covariance_log_likelihood(oscillator(p), ys))(start)
    g_qr = cr.grad(lambda p: log_likelihood(oscillator(p), ys, qr_tria))(start)
    print("gradient at the starting point")
    print("  square-root filter (tria):  ", np.array2string(g_sqrt, precision=6))
    print("  covariance-form filter:     ", np.array2string(g_cov, precision=6))
    print("  square-root through plain QR:", g_qr)
    print(f"  max difference tria vs covariance form: {np.max(np.abs(g_sqrt - g_cov)):.2e}")

    params, step = start.copy(), 0.05
    value_and_grad = cr.jit(cr.value_and_grad(loglik))
    value, g = value_and_grad(params)
    print("\ngradient ascent (normalized steps, halved when the likelihood drops; the "
          "filter and its gradient compiled once by chainrule.jit)")
    for it in range(1, 201):
        trial = params + step * g / np.linalg.norm(g)
        trial_value, trial_g = value_and_grad(trial)
        if trial_value > value:
            params, value, g, step = trial, trial_value, trial_g, step * 1.2
        else:
            step *= 0.5
        if it % 25 == 0:
            print(f"  step {it:3d}  log-likelihood {value:10.4f}")
    names = ["frequency", "damping", "process noise", "observation noise"]
    print("\nparameter            true   fitted")
    for name, t, p in zip(names, np.exp(truth), np.exp(params)):
        print(f"  {name:18s} {t:6.3f}  {p:6.3f}")
    print(f"log-likelihood at the truth {loglik(truth):.4f}, at the fit {value:.4f}")


if __name__ == "__main__":
    main()
