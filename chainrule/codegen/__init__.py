"""Code generation: graphs to Python source calling the array namespace, compiled into
functions (see `python.generate` and the per-primitive `emitters`)."""
from .python import GeneratedModule, generate  # noqa: F401
