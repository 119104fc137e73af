"""The frameworks measured and the variants of each.

A *framework* knows how to import itself (or say why it cannot), which array namespace
the workload functions run on, and how to move arrays in and out. A *variant* is one way
a user of that framework gets the derivative: ``build(module, f, workload)`` returns a
callable with the workload function's arguments.

The peers (autograd, JAX, PyTorch) are optional: when one is missing its rows say n/a.
chainrule is used through its public API only; a missing function is n/a as well.
"""

import importlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .tree import tree_map


class Unavailable(Exception):
    """A framework, or one of its features, is not there: the row says n/a."""


def api(module, name):
    """``module.name``, or Unavailable naming what is missing."""
    try:
        return getattr(module, name)
    except AttributeError:
        raise Unavailable(f"{module.__name__} has no {name}") from None


def _import(name):
    try:
        return importlib.import_module(name)
    except ImportError as error:
        if isinstance(error, ModuleNotFoundError) and name.startswith(str(error.name)):
            raise Unavailable(f"{error.name} not installed") from None
        raise Unavailable(f"import {name} failed: {error}") from None
    except Exception as error:  # a package that is there but breaks on import
        raise Unavailable(f"import {name} failed: {type(error).__name__}: {error}") from None


class Framework:
    """NumPy itself: the hand-written derivatives run on plain arrays."""

    name = "numpy"
    peer = False  # counts for "best peer"
    _module = None

    def load(self):
        if self._module is None:
            self._module = self._load()
        return self._module

    def _load(self):
        return np

    def namespace(self, module):
        """The namespace the workload functions are made with (``workload.make``)."""
        return module

    def to_framework(self, module, tree):
        return tree

    def to_numpy(self, tree):
        return tree_map(np.asarray, tree)

    def sync(self, result):
        """Wait until ``result`` is computed (for frameworks that dispatch asynchronously)."""
        return result


class Chainrule(Framework):
    name = "chainrule"

    def _load(self):
        cr = _import("chainrule")
        api(cr, "grad")  # a package still being written: no API yet means n/a
        return cr

    def namespace(self, module):
        return np  # chainrule differentiates plain NumPy code


class Autograd(Framework):
    name = "autograd"
    peer = True

    def _load(self):
        return _import("autograd")

    def namespace(self, module):
        return _import("autograd.numpy")


class Jax(Framework):
    name = "jax"
    peer = True

    def _load(self):
        jax = _import("jax")
        jax.config.update("jax_enable_x64", True)
        return jax

    def namespace(self, module):
        return module.numpy

    def to_framework(self, module, tree):
        return tree_map(module.numpy.asarray, tree)

    def sync(self, result):
        return self.load().block_until_ready(result)


class _TorchAsNumPy:
    """PyTorch under the names of the NumPy functions the workloads use.

    ``torch`` already accepts ``axis=`` and ``keepdims=``; only ``max`` differs (with an
    axis, ``torch.max`` also returns the indices), so it maps to ``torch.amax``.
    """

    def __init__(self, torch):
        self._torch = torch

    def __getattr__(self, name):
        return getattr(self._torch, name)

    def max(self, x, axis=None, keepdims=False):
        if axis is None:
            return self._torch.max(x)
        return self._torch.amax(x, dim=axis, keepdim=keepdims)


class Torch(Framework):
    name = "torch"
    peer = True

    def _load(self):
        return _import("torch")

    def namespace(self, module):
        return _TorchAsNumPy(module)

    def to_framework(self, module, tree):
        return tree_map(module.from_numpy, tree)

    def to_numpy(self, tree):
        return tree_map(lambda t: t.detach().numpy(), tree)


FRAMEWORKS = {fw.name: fw for fw in [Framework(), Chainrule(), Autograd(), Jax(), Torch()]}


@dataclass(frozen=True)
class Variant:
    framework: str  # a key of FRAMEWORKS
    label: str  # as shown in the table; unique
    kind: str  # the workload kind it computes: "grad" | "hessian" | "jacobian"
    build: Callable  # build(module, f, workload) -> derivative function
    compiled: bool = False  # report the first-call (trace/compile) cost
    returns_value: bool = False  # the result is (value, derivative)


def _transform(name, jit):
    """``m.name(f)``, or ``m.jit(m.name(f))``, for chainrule and JAX."""

    def build(module, f, workload):
        derivative = api(module, name)(f)
        return api(module, "jit")(derivative) if jit else derivative

    return build


def _transform_family(framework, prefix, names_by_kind, jitted_by_kind):
    for kind, names in names_by_kind.items():
        for name in names:
            yield Variant(
                framework,
                f"{prefix}.{name}",
                kind,
                _transform(name, jit=False),
                returns_value=name == "value_and_grad",
            )
        for name in jitted_by_kind.get(kind, ()):
            yield Variant(
                framework,
                f"{prefix}.jit({prefix}.{name})",
                kind,
                _transform(name, jit=True),
                compiled=True,
                returns_value=name == "value_and_grad",
            )


def _autograd(name):
    return lambda autograd, f, workload: api(autograd, name)(f)


def _torch_backward(torch, f, workload):
    """The classic tape: leaves with requires_grad, ``.backward()``, read ``.grad``."""

    def grad(params, *rest):
        leaves = tree_map(lambda t: t.detach().requires_grad_(), params)
        f(leaves, *rest).backward()
        return tree_map(lambda t: t.grad, leaves)

    return grad


def _torch_func(name):
    def build(torch, f, workload):
        return api(_import("torch.func"), name)(f)

    return build


def _torch_functional(name):
    """``torch.autograd.functional.jacobian`` / ``hessian``, default settings."""

    def build(torch, f, workload):
        transform = api(_import("torch.autograd.functional"), name)
        return lambda x, *rest: transform(lambda x: f(x, *rest), x)

    return build


VARIANTS = [
    Variant("numpy", "NumPy by hand", kind, lambda np_, f, workload: workload.derivative)
    for kind in ("grad", "hessian", "jacobian")
]
VARIANTS += _transform_family(
    "chainrule",
    "cr",
    {
        "grad": ["grad", "value_and_grad"],
        "hessian": ["hessian"],
        "jacobian": ["jacobian", "jacfwd", "jacrev"],
    },
    {"grad": ["grad"], "hessian": ["hessian"], "jacobian": ["jacobian", "jacfwd", "jacrev"]},
)
VARIANTS += [
    Variant("autograd", "autograd.grad", "grad", _autograd("grad")),
    Variant("autograd", "autograd.hessian", "hessian", _autograd("hessian")),
    Variant("autograd", "autograd.jacobian", "jacobian", _autograd("jacobian")),
]
VARIANTS += _transform_family(
    "jax",
    "jax",
    {"grad": ["grad"], "hessian": ["hessian"], "jacobian": ["jacfwd", "jacrev"]},
    {"grad": ["grad"], "hessian": ["hessian"], "jacobian": ["jacfwd", "jacrev"]},
)
VARIANTS += [
    Variant("torch", "torch backward", "grad", _torch_backward),
    Variant("torch", "torch.func.grad", "grad", _torch_func("grad")),
    Variant("torch", "torch.autograd.functional.hessian", "hessian", _torch_functional("hessian")),
    Variant("torch", "torch.func.hessian", "hessian", _torch_func("hessian")),
    Variant("torch", "torch.autograd.functional.jacobian", "jacobian", _torch_functional("jacobian")),
    Variant("torch", "torch.func.jacfwd", "jacobian", _torch_func("jacfwd")),
    Variant("torch", "torch.func.jacrev", "jacobian", _torch_func("jacrev")),
]

VARIANTS_BY_KEY = {(variant.kind, variant.label): variant for variant in VARIANTS}
assert len(VARIANTS_BY_KEY) == len(VARIANTS), "duplicate variant label"


@dataclass
class Prepared:
    """A variant made ready for one workload: ``call()`` computes and waits for the result."""

    call: Callable
    to_numpy: Callable


def prepare(variant, workload, inputs):
    """Import, convert the inputs and build the derivative; raises Unavailable or any error."""
    framework = FRAMEWORKS[variant.framework]
    module = framework.load()
    f = workload.make(framework.namespace(module))
    args = framework.to_framework(module, inputs)
    derivative = variant.build(module, f, workload)
    return Prepared(call=lambda: framework.sync(derivative(*args)), to_numpy=framework.to_numpy)


def variants_for(kind, frameworks):
    return [v for v in VARIANTS if v.kind == kind and v.framework in frameworks]
