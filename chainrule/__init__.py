"""chainrule: exact derivatives of ordinary NumPy code, in forward and reverse mode, to
any order."""
from .api import (concrete, grad, hessian, jacfwd, jacobian, jacrev, jvp,  # noqa: F401
                  linearize, make_graph, stop_gradient, value_and_grad, vjp)
from .transforms.custom import custom_jvp, custom_vjp  # noqa: F401
from .transforms.batching import vmap  # noqa: F401
from .control import checkpoint, cond, fori_loop, scan, while_loop  # noqa: F401
from .forward_grad import forward_grad  # noqa: F401
from .jit import jit, source  # noqa: F401
from .core.errors import (ChainruleError, ConcretizationError, NonDifferentiableError,  # noqa: F401
                          SingularMatrixError,
                          ShapeError, TracerConversionError, UnsupportedOperationError)
from .core.pytree import (register_dataclass, register_pytree, tree_flatten,  # noqa: F401
                          tree_map, tree_unflatten)

__version__ = "0.1.0"

# The modules built on the core load on first use, so that `import chainrule` stays
# quick and pulls in neither SciPy's sparse stack nor database engines.
_SUBMODULES = ("elimination", "kalman", "linalg", "lipschitz", "relational", "solvers")


def __getattr__(name):
    if name in _SUBMODULES:
        import importlib
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'chainrule' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
