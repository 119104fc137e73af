"""The primitives, by family. Importing this package registers every primitive's rules
and what each supported NumPy function means on tracers."""
from . import common, elementwise, shape, reductions, contraction, linalg, composed  # noqa: F401
