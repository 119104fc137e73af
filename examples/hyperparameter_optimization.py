"""Tune the L2 regularization of a logistic regression by hypergradient descent.

The inner problem, w*(lam) = argmin_w  training loss(w) + lam/2 |w|^2, is solved by
Newton's method; the outer loop minimizes the validation loss of w*(lam) over
log(lam) with the hypergradient that chainrule.solvers gives through the solver.
The hypergradients of the three `diff` modes are compared at the end.

    python examples/hyperparameter_optimization.py
"""
import time

import numpy as np

import chainrule as cr
from chainrule import solvers as S


def make_data(rng, n_train=80, n_valid=400, d=30):
    w_true = rng.standard_normal(d) * (rng.random(d) < 0.3)
    X = rng.standard_normal((n_train + n_valid, d))
    y = np.where(X @ w_true + 0.5 * rng.standard_normal(len(X)) > 0, 1.0, -1.0)
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def logistic_loss(w, X, y):
    return np.mean(np.logaddexp(0.0, -y * (X @ w)))


def training_objective(w, theta):
    log_lam, X, y = theta
    return logistic_loss(w, X, y) + 0.5 * np.exp(log_lam) * np.sum(w * w)


def validation_loss(log_lam, data, diff="implicit"):
    X_train, y_train, X_valid, y_valid = data
    w = S.minimize(training_objective, np.zeros(X_train.shape[1]),
                   (log_lam, X_train, y_train), method="newton", diff=diff, tol=1e-10)
    return logistic_loss(w, X_valid, y_valid)


def main():
    rng = np.random.default_rng(0)
    data = make_data(rng)
    hypergradient = cr.value_and_grad(validation_loss)
    log_lam, learning_rate = np.log(1e-4), 20.0
    start = time.perf_counter()
    print(" step   lambda      validation loss   d loss / d log(lambda)")
    for step in range(25):
        loss, g = hypergradient(log_lam, data)
        if step % 3 == 0 or step == 24:
            print(f"{step:5d}   {np.exp(log_lam):.3e}   {loss:.6f}          {g:+.3e}")
        log_lam = log_lam - learning_rate * g
    print(f"tuned lambda = {np.exp(log_lam):.4g} in {time.perf_counter() - start:.1f} s")

    grid = np.linspace(np.log(1e-4), np.log(10.0), 60)
    losses = [validation_loss(v, data) for v in grid]
    print(f"grid search  : best lambda = {np.exp(grid[int(np.argmin(losses))]):.4g} "
          f"(validation loss {min(losses):.6f})")

    print("hypergradient at lambda = 1e-3, by diff mode (Newton: all three agree, one-step "
          "to the accuracy of the iterate its last step started from):")
    for diff in ("implicit", "unroll", "onestep"):
        t0 = time.perf_counter()
        g = cr.grad(validation_loss)(np.log(1e-3), data, diff)
        print(f"  {diff:9s} {g:+.10e}   ({time.perf_counter() - t0:.3f} s)")


if __name__ == "__main__":
    main()
