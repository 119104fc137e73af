"""The primitives, by family. Importing this package registers every primitive's rules
and what each supported NumPy function means on tracers; scipy.special's functions are
registered when a traced value first meets one (`special.py`)."""
import sys

import numpy as np

from ..core.trace import handler_loaders
from . import common, elementwise, shape, reductions, contraction, linalg, composed  # noqa: F401


def _load_scipy_special(key):
    """Loads `special.py` when key is one of scipy.special's ufuncs (SciPy then has been
    imported by the caller already)."""
    module = sys.modules.get("scipy.special")
    if module is not None and isinstance(key, np.ufunc) and \
            getattr(module, key.__name__, None) is key:
        from . import special  # noqa: F401


handler_loaders.append(_load_scipy_special)
