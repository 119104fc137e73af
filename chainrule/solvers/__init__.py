"""Derivatives of iterative algorithms: unrolled, implicit and one-step, behind one
`diff` switch, for the solvers shipped here and for any solver of the user's own
(`custom_root`, `custom_fixed_point`).

    from chainrule import solvers as S
    x = S.fixed_point(T, x0, theta, diff="implicit")      # "unroll" | "onestep"
    w = S.minimize(f, w0, theta, method="newton", diff="onestep")
    w = S.minimize(f, w0, theta, method="prox_grad", prox=S.prox.l1, prox_theta=lam)
"""
from . import prox  # noqa: F401
from .common import (ClosedOverTracerError, NonConvergenceError,  # noqa: F401
                     NonConvergenceWarning, SingularSystemError, SolverInfo,
                     SolverOptionError)
from .implicit import custom_fixed_point, custom_root  # noqa: F401
from .interface import admm, douglas_rachford, fixed_point, minimize, root  # noqa: F401
from .linear import linear_solve  # noqa: F401
from .sinkhorn import Transport, sinkhorn  # noqa: F401
