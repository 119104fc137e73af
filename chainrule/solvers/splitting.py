"""Operator splitting for min f(x; theta_f) + g(x; theta_g) given the two proximal
operators (signature of `prox`: prox(x, param, step)), for x an array of any shape.
Both methods are fixed-point iterations on a state z; the solution is read off z (by
one more prox for Douglas-Rachford), traced as usual.
Their derivatives are conservative Jacobians at nonsmooth points (Bolte, Pauwels &
Vaiter 2022).

- Douglas-Rachford: x = prox_f(z), z+ = z + prox_g(2x - z) - x; solution prox_f(z*).
- ADMM (scaled form, constraint x = y): x = prox_f(y - u), y+ = prox_g(x + u),
  u+ = u + x - y+; state z = (y, u), a pair of arrays shaped like x; solution y*.
"""
from __future__ import annotations


def douglas_rachford_map(prox_f, prox_g, step):
    def T(z, theta):
        theta_f, theta_g = theta
        x = prox_f(z, theta_f, step)
        return z + prox_g(2 * x - z, theta_g, step) - x

    def solution(z, theta):
        return prox_f(z, theta[0], step)
    return T, solution


def admm_map(prox_f, prox_g, step):
    def T(z, theta):
        theta_f, theta_g = theta
        y, u = z
        x = prox_f(y - u, theta_f, step)
        y_new = prox_g(x + u, theta_g, step)
        return y_new, u + x - y_new

    def solution(z, theta):
        return z[0]
    return T, solution
