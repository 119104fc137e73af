"""Primitives and the tables of their rules.

A primitive is a named operation. Everything chainrule knows about it sits in one table
per rule kind, keyed by the primitive, and each op module registers its rules right
beside the primitive's definition. The rule signatures, once for all:

    impl(*arrays, **params) -> array | tuple[array]
        Runs the operation on concrete arrays (NumPy by default).
    shape(*avals, **params) -> list[Aval]
        Output avals from input avals; used when tracing without values and by `verify`.
    jvp(primals, tangents, outs, **params) -> list[tangent]
        Forward-mode rule. `primals` and `outs` are the input and output values;
        `tangents` holds one tangent per input, `Zero` where it is known to be zero.
        Must be written with traceable operations so it can itself be differentiated.
    transpose(cts, *args, **params) -> list[cotangent | None]
        For primitives linear in some inputs: `args` holds `UndefinedPrimal` for the
        linear inputs and values for the others; returns one cotangent per input
        (None for inputs that are not linear).
    batch(args, dims, **params) -> (outs, out_dims)
        Vectorization rule: `dims[i]` is the batched axis of `args[i]` or None.
    diagonal(args, dims, **params) -> DiagonalBatch | (out, out_dim) | None
        Optional, for Jacobians (`transforms/basis.py`): the batch rule for when some
        args are `DiagonalBatch` (the identity basis, kept structured); None when the
        structure does not help, and the batch rule then gets the dense batch.

A primitive with no JVP rule is not differentiable: using a nonzero tangent on it raises
an error naming it. A primitive whose inputs and outputs are integer or boolean needs no
rules at all (its tangents are always `Zero`).
"""
from __future__ import annotations

import math

import numpy as np

from .ir import Aval
from .trace import bind as _bind

class RuleTable(dict):
    """A table of rules. Every change counts in `RuleTable.version`, which caches of
    rules derived from these (the tape's VJP templates) compare against."""
    version = 0


def _counted(method):
    def change(self, *args, **kwargs):
        RuleTable.version += 1
        return method(self, *args, **kwargs)
    return change


for _name in ("__setitem__", "__delitem__", "__ior__", "pop", "popitem", "setdefault",
              "update", "clear"):
    setattr(RuleTable, _name, _counted(getattr(dict, _name)))


impl_rules = RuleTable()
shape_rules = RuleTable()
jvp_rules = RuleTable()
transpose_rules = RuleTable()
batch_rules = RuleTable()
diagonal_rules = RuleTable()


class Primitive:
    """A named operation; its rules live in the tables above."""
    __slots__ = ("name", "multiple_results")

    def __init__(self, name: str, multiple_results: bool = False):
        self.name = name
        self.multiple_results = multiple_results

    def __repr__(self):
        return self.name

    def bind(self, *args, **params):
        """Apply to arrays, Python scalars or tracers: the innermost trace records it."""
        return _bind(self, args, params)

    def impl(self, *args, **params):
        return impl_rules[self](*args, **params)

    def shape(self, *avals, **params) -> list:
        out = shape_rules[self](*avals, **params)
        return list(out) if self.multiple_results else [out]


def primitive(name, impl, shape, *, multiple_results=False, jvp=None, transpose=None,
              batch=None) -> Primitive:
    """Defines a primitive and registers the rules given."""
    p = Primitive(name, multiple_results)
    impl_rules[p] = impl
    shape_rules[p] = shape
    for table, rule in ((jvp_rules, jvp), (transpose_rules, transpose), (batch_rules, batch)):
        if rule is not None:
            table[p] = rule
    return p


class Zero:
    """A symbolic zero tangent or cotangent: costs nothing until it must be an array."""
    __slots__ = ("aval",)

    def __init__(self, aval: Aval):
        self.aval = aval

    def __repr__(self):
        return f"Zero({self.aval})"


class UndefinedPrimal:
    """Marks the linear input of a primitive while transposing it."""
    __slots__ = ("aval",)

    def __init__(self, aval: Aval):
        self.aval = aval

    def __repr__(self):
        return f"UndefinedPrimal({self.aval})"


class DiagonalBatch:
    """The batch of arrays e_k * d for k = 0 .. d.size - 1, where e_k is the k-th
    standard basis array shaped like d (flat index k): the identity basis of a Jacobian
    and its elementwise rescalings, stored as d alone. Its batch axis counts as axis 0."""
    __slots__ = ("d",)

    def __init__(self, d):
        self.d = d

    def dense(self):
        shape = np.shape(self.d)
        return np.reshape(np.diag(np.reshape(self.d, (math.prod(shape),))), (-1,) + shape)

    def __repr__(self):
        return f"DiagonalBatch({self.d!r})"


def is_undefined(x) -> bool:
    return isinstance(x, UndefinedPrimal)
