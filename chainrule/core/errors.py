"""The errors chainrule raises. Each says what was wrong and what to do instead."""
import numpy as np


class ChainruleError(Exception):
    """Base class of chainrule's own errors."""


class UnsupportedOperationError(ChainruleError, NotImplementedError):
    """A NumPy function or feature that chainrule cannot trace."""


class TracerConversionError(ChainruleError, TypeError):
    """A traced value was asked for its plain numbers (which would lose its derivative)."""


class ConcretizationError(ChainruleError, TypeError):
    """Python control flow needed a value while tracing with shapes only (inside jit)."""


class NonDifferentiableError(ChainruleError, TypeError):
    """Differentiation was asked of an integer/boolean input or a rule-less primitive."""


class ShapeError(ChainruleError, ValueError):
    """Arguments of incompatible shapes."""


class SingularMatrixError(ChainruleError, np.linalg.LinAlgError):
    """A linear solve met a singular matrix (in a value or in a derivative rule)."""


class LeakedTracerError(ChainruleError, RuntimeError):
    """A traced value escaped the function being transformed and was used later."""


def unsupported_function(name: str) -> UnsupportedOperationError:
    return UnsupportedOperationError(
        f"chainrule cannot differentiate `{name}` yet. Rewrite the code with supported "
        f"NumPy functions, or wrap the computation in a function decorated with "
        f"`chainrule.custom_vjp` (or `custom_jvp`) that gives its derivative rule.")
