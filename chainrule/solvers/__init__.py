"""Derivatives of iterative algorithms: unrolled, implicit and one-step, behind one
`diff` switch, for the solvers shipped here and for any solver of the user's own
(`custom_root`, `custom_fixed_point`)."""
from .common import (ClosedOverTracerError, NonConvergenceError,  # noqa: F401
                     NonConvergenceWarning, SolverInfo, SolverOptionError)
from .implicit import custom_fixed_point, custom_root  # noqa: F401
from .linear import linear_solve  # noqa: F401
