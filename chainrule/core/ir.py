"""The intermediate representation: plain data, a printer and a verifier.

A `Graph` is a list of equations in SSA form. Each `Eqn` applies one primitive to
input atoms (`Var` or `Literal`) and defines new output `Var`s. Every `Var` carries an
`Aval` (shape and dtype), so any graph can be checked (`verify`) and printed
(`str(graph)`) without running it.

    { lambda W:f64[3,4] x:f64[4] .
      a:f64[3] = dot_general[dims=(((1,), (0,)), ((), ()))] W x
      b:f64[3] = tanh a
      c:f64[] = reduce_sum[axes=(0,)] b
      return c }
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Aval:
    """Abstract value: what is known about an array while tracing without values."""
    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype):
        self.shape = shape if type(shape) is tuple else tuple(int(d) for d in shape)
        self.dtype = dtype if isinstance(dtype, np.dtype) else np.dtype(dtype)

    def __eq__(self, other):
        return isinstance(other, Aval) and self.shape == other.shape \
            and self.dtype == other.dtype

    def __hash__(self):
        return hash((self.shape, self.dtype))

    def __repr__(self):
        return f"Aval({self.shape}, {self.dtype})"

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return math.prod(self.shape)

    @property
    def is_float(self):
        return self.dtype.kind in "fc"

    def __str__(self):
        return f"{_short_dtype(self.dtype)}[{','.join(map(str, self.shape))}]"


def aval_of(x) -> Aval:
    """The Aval of an array, a scalar or a tracer."""
    if isinstance(x, (np.ndarray, np.generic)):
        return Aval(x.shape, x.dtype)
    aval = getattr(x, "aval", None)
    if aval is not None:
        return aval
    x = np.asarray(x)
    return Aval(x.shape, x.dtype)


def _short_dtype(dtype: np.dtype) -> str:
    return {"f": "f", "i": "i", "u": "u", "b": "bool", "c": "c"}[dtype.kind] + (
        "" if dtype.kind == "b" else str(8 * dtype.itemsize))


_var_ids = itertools.count()


class Var:
    """A variable of a graph: defined once, by a graph input or an equation.

    `hint` is a name taken from the user's code where one is known; printers and code
    generators use it, identity uses the object itself.
    """
    __slots__ = ("aval", "hint", "uid")

    def __init__(self, aval: Aval, hint: str | None = None):
        self.aval = aval
        self.hint = hint
        self.uid = next(_var_ids)

    def __repr__(self):
        return f"Var({self.hint or self.uid}:{self.aval})"


@dataclass(eq=False)
class Literal:
    """A constant written into the graph (a Python scalar or a small array)."""
    value: Any
    aval: Aval = None

    def __post_init__(self):
        if self.aval is None:
            self.aval = aval_of(self.value)

    def __repr__(self):
        return f"Literal({self.value!r})"


Atom = Var | Literal


@dataclass(eq=False, slots=True)
class Eqn:
    """outputs = primitive[params](*inputs); `source` is the user's line that made it."""
    prim: Any
    inputs: list
    outputs: list
    params: dict
    source: str | None = None


@dataclass(eq=False)
class Graph:
    """A function as data. `constvars` are bound to `consts` (captured arrays or
    tracers of an enclosing trace); `invars` are the arguments."""
    constvars: list
    invars: list
    eqns: list
    outvars: list
    consts: list = field(default_factory=list)

    def __str__(self):
        return pretty(self)

    __repr__ = __str__

    def verify(self):
        verify(self)
        return self


# --------------------------------------------------------------------------- printer

def _names():
    for n in itertools.count(1):
        for t in itertools.product("abcdefghijklmnopqrstuvwxyz", repeat=n):
            yield "".join(t)


class Namer:
    """Gives each Var a short, unique, readable name (its hint when it has one)."""

    def __init__(self):
        self.names: dict[Var, str] = {}
        self.used: set[str] = set()
        self.fresh = _names()

    def __call__(self, v: Var) -> str:
        if v not in self.names:
            name = v.hint if v.hint and v.hint.isidentifier() else None
            if name is not None and name in self.used:
                name = next(f"{v.hint}_{i}" for i in itertools.count(1)
                            if f"{v.hint}_{i}" not in self.used)
            while name is None or name in self.used:
                name = next(self.fresh)
            self.names[v] = name
            self.used.add(name)
        return self.names[v]


def format_param(value) -> str:
    if isinstance(value, (tuple, list)) and value and all(isinstance(v, Graph) for v in value):
        return "(" + ", ".join(format_param(v) for v in value) + ")"
    if isinstance(value, Graph):
        return pretty(value, indent=4).replace("\n", "\n    ")
    if isinstance(value, np.ndarray):
        return f"array{aval_of(value)}" if value.size > 6 else np.array2string(
            value, separator=",")
    if isinstance(value, np.dtype):
        return str(value)
    if callable(value) and hasattr(value, "__name__"):
        return value.__name__
    return repr(value)


def format_atom(a, namer: Namer) -> str:
    if isinstance(a, Literal):
        v = a.value
        if np.ndim(v) == 0:
            return repr(v.item() if isinstance(v, np.generic) else v)
        return f"const{a.aval}"
    return namer(a)


def pretty(graph: Graph, indent: int = 2) -> str:
    """One equation a line: `out:aval = prim[params] in1 in2`."""
    namer = Namer()
    pad = " " * indent
    decl = lambda vs: " ".join(f"{namer(v)}:{v.aval}" for v in vs)
    lines = ["{ lambda " + (decl(graph.constvars) + " ; " if graph.constvars else "")
             + decl(graph.invars) + " ."]
    for e in graph.eqns:
        outs = " ".join(f"{namer(v)}:{v.aval}" for v in e.outputs)
        params = ", ".join(f"{k}={format_param(v)}" for k, v in e.params.items())
        params = f"[{params}]" if params else ""
        args = " ".join(format_atom(a, namer) for a in e.inputs)
        lines.append(f"{pad}{outs} = {e.prim.name}{params} {args}".rstrip())
    lines.append(f"{pad}return " + ", ".join(format_atom(a, namer) for a in graph.outvars)
                 + " }")
    return "\n".join(lines)


# --------------------------------------------------------------------------- verifier

class GraphError(Exception):
    """The graph breaks an invariant of the IR."""


def verify(graph: Graph) -> None:
    """Checks SSA (each Var defined once, before use) and that every equation's output
    avals agree with its primitive's shape rule."""
    defined = set()

    def define(v, where):
        if not isinstance(v, Var):
            raise GraphError(f"{where}: {v!r} is not a Var")
        if v in defined:
            raise GraphError(f"{where}: {v!r} is defined twice")
        defined.add(v)

    def use(a, where):
        if isinstance(a, Var) and a not in defined:
            raise GraphError(f"{where}: {a!r} is used before it is defined")

    if len(graph.consts) not in (0, len(graph.constvars)):
        raise GraphError("consts and constvars differ in length")
    for v in list(graph.constvars) + list(graph.invars):
        define(v, "inputs")
    for i, e in enumerate(graph.eqns):
        where = f"equation {i} ({e.prim.name})"
        for a in e.inputs:
            use(a, where)
        expected = e.prim.shape(*[a.aval for a in e.inputs], **e.params)
        got = [v.aval for v in e.outputs]
        if list(expected) != got:
            raise GraphError(f"{where}: outputs {got} but the shape rule gives "
                             f"{list(expected)}")
        for v in e.outputs:
            define(v, where)
    for a in graph.outvars:
        use(a, "return")
