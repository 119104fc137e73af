"""The core: IR, tracing, pytrees and the primitive registry. Knows nothing of the
modules built on top of it."""
from .ir import Aval, Eqn, Graph, Literal, Var, aval_of, pretty, verify  # noqa: F401
from .primitive import Primitive, UndefinedPrimal, Zero, primitive  # noqa: F401
from .pytree import (register_dataclass, register_pytree, tree_flatten,  # noqa: F401
                     tree_leaves, tree_map, tree_unflatten)
from .trace import Tracer, concrete, eval_graph, trace_flat  # noqa: F401
