"""Kernels: ordinary Python functions of scalars or fixed-length vectors, traced by
chainrule and compiled to SQL expressions.

A kernel's value and its vector-Jacobian product (from chainrule's own `vjp`) are both
traced abstractly into graphs; `compile_graph` turns a graph into one SQL expression per
output. A vector of length n is held as n scalar expressions ("lanes"), so elementwise
operations, broadcasting, sums and dot products need nothing beyond scalar SQL, and the
same code serves every dialect. An equation whose primitive has no SQL form raises
`UnsupportedKernelError` naming it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import api
from ..core.ir import Aval, Literal
from ..core.trace import trace_flat
from .dialect import DuckDBDialect
from .errors import RelationalError, UnsupportedKernelError

F64 = np.dtype(np.float64)


@dataclass
class Expr:
    """A SQL expression of a scalar (`text`) or of a vector (`lanes`, one per element)."""
    dtype: np.dtype
    text: str | None = None
    lanes: list | None = None

    def lane(self, k: int) -> str:
        return self.text if self.lanes is None else self.lanes[k]

    def as_sql(self, dialect) -> str:
        return self.text if self.lanes is None else dialect.array(self.lanes)


def input_expr(column_sql: str, width, dialect) -> Expr:
    """The expression of a value column: a scalar, or `width` array elements."""
    if width is None:
        return Expr(F64, text=column_sql)
    return Expr(F64, lanes=[dialect.element(column_sql, k) for k in range(width)])


def _aval(width) -> Aval:
    return Aval(() if width is None else (width,), F64)


def _width_of(aval, what) -> int | None:
    if not aval.is_float or aval.ndim > 1:
        raise RelationalError(
            f"{what} returns {aval}; a kernel must return a float scalar or a 1-d float "
            f"vector (the value of a relation). Use float arithmetic, e.g. x * 1.0")
    return None if aval.ndim == 0 else aval.shape[0]


class Kernel:
    """A traced kernel over inputs of the given widths (None: scalar)."""

    def __init__(self, fn, in_widths, name="kernel"):
        self.fn = fn
        self.name = getattr(fn, "__name__", name)
        self.in_widths = list(in_widths)
        avals = [_aval(w) for w in self.in_widths]
        self.graph = trace_flat(lambda *xs: [_as_array(fn(*xs))], avals, abstract=True)[0]
        self.out_width = _width_of(self.graph.outvars[0].aval, f"kernel {self.name}")
        self._vjp = None
        probe = DuckDBDialect()                # an operation with no SQL form fails now
        self.value_sql(probe, [input_expr("x", w, probe) for w in self.in_widths])

    @property
    def vjp_graph(self):
        """Graph of (*inputs, cotangent) -> one cotangent per input."""
        if self._vjp is None:
            def vjp(*xs):
                *ins, ct = xs
                return list(api.vjp(lambda *a: _as_array(self.fn(*a)), *ins)[1](ct))
            avals = [_aval(w) for w in self.in_widths + [self.out_width]]
            self._vjp = trace_flat(vjp, avals, abstract=True)[0]
        return self._vjp

    def value_sql(self, dialect, inputs) -> Expr:
        return compile_graph(self.graph, dialect, inputs)[0]

    def vjp_sql(self, dialect, inputs, cotangent, argnum) -> Expr:
        return compile_graph(self.vjp_graph, dialect, list(inputs) + [cotangent],
                             outputs=[argnum])[0]

    def vjp_uses(self, argnum) -> set:
        """Indices of the inputs (and cotangent, last) that input argnum's VJP reads."""
        return used_inputs(self.vjp_graph, argnum)


def _as_array(x):
    return np.float64(x) if isinstance(x, (int, float)) else x


def used_inputs(graph, output_index) -> set:
    needed = {graph.outvars[output_index]} - {None}
    for e in reversed(graph.eqns):
        if any(o in needed for o in e.outputs):
            needed.update(a for a in e.inputs if not isinstance(a, Literal))
    return {i for i, v in enumerate(graph.invars) if v in needed}


# --------------------------------------------------------------------------- compiling

def constant_expr(value, dialect) -> Expr:
    value = np.asarray(value)
    if value.ndim > 1:
        raise UnsupportedKernelError(
            f"a kernel constant of shape {value.shape} has no SQL form; kernels work on "
            f"scalars and 1-d vectors")

    def lit(x):
        if value.dtype == bool:
            return "TRUE" if x else "FALSE"
        if value.dtype.kind in "iu":
            return str(int(x))
        return dialect.float_literal(x)
    if value.ndim == 0:
        return Expr(value.dtype, text=lit(value[()]))
    return Expr(value.dtype, lanes=[lit(x) for x in value])


def compile_graph(graph, dialect, args, outputs=None) -> list:
    """SQL expressions of a graph's outputs (all, or the indices in `outputs`) given
    expressions of its inputs."""
    env = {v: constant_expr(c, dialect) for v, c in zip(graph.constvars, graph.consts)}
    env.update(zip(graph.invars, args))

    def read(atom):
        return constant_expr(atom.value, dialect) if isinstance(atom, Literal) else env[atom]

    wanted = [graph.outvars[i] for i in (outputs or range(len(graph.outvars)))]
    needed = {a for a in wanted if not isinstance(a, Literal)}
    for e in reversed(graph.eqns):
        if any(o in needed for o in e.outputs):
            needed.update(a for a in e.inputs if not isinstance(a, Literal))
    for e in graph.eqns:
        if not any(o in needed for o in e.outputs):
            continue
        rule = SQL_RULES.get(e.prim.name)
        if rule is None or e.prim.multiple_results:
            raise UnsupportedKernelError(
                f"the kernel operation `{e.prim.name}` has no SQL form; write the kernel "
                f"with arithmetic, exp/log, sqrt, tanh, maximum/minimum, logaddexp, "
                f"comparisons, np.where, sums and dot products of vectors")
        env[e.outputs[0]] = rule(dialect, e.outputs[0].aval, [read(a) for a in e.inputs],
                                 **e.params)
    return [read(a) for a in wanted]


def _numeric(e: Expr, text: str) -> str:
    return f"CAST({text} AS DOUBLE)" if e.dtype == bool else text


def _elementwise(template, numeric=True):
    """A rule applying `template(dialect, *scalar_sql)` lane by lane (with broadcasting
    of scalars)."""
    def rule(dialect, out, ins, **params):
        def one(k):
            args = [_numeric(e, e.lane(k)) if numeric else e.lane(k) for e in ins]
            return template(dialect, *args)
        if out.ndim == 0:
            return Expr(out.dtype, text=one(0))
        return Expr(out.dtype, lanes=[one(k) for k in range(out.shape[0])])
    return rule


def _fn(name):
    return _elementwise(lambda d, *xs: f"{name}({', '.join(xs)})")


def _op(symbol, numeric=True):
    return _elementwise(lambda d, x, y: f"({x} {symbol} {y})", numeric)


def _logaddexp(d, x, y):
    return f"(greatest({x}, {y}) + {d.log1p(f'exp(-abs({x} - {y}))')})"


def _convert(dialect, out, ins, dtype):
    kind = np.dtype(dtype).kind
    if kind == "b":
        return _elementwise(lambda d, x: f"({x} <> 0)")(dialect, out, ins)
    target = "DOUBLE" if kind == "f" else "BIGINT"
    return _elementwise(lambda d, x: f"CAST({x} AS {target})")(dialect, out, ins)


def _broadcast(dialect, out, ins, shape):
    (x,) = ins
    if out.ndim == 0:
        return x
    return Expr(out.dtype, lanes=[x.lane(0 if x.lanes and len(x.lanes) == 1 else k)
                                  for k in range(out.shape[0])])


def _reduce(combine):
    def rule(dialect, out, ins, axes):
        (x,) = ins
        if x.lanes is None:
            return x
        return Expr(out.dtype, text=combine([_numeric(x, l) for l in x.lanes]))
    return rule


def _contract(dialect, out, ins, spec):
    a, b = ins
    letters = {c for s in spec for c in s}
    if len(letters) > 1 or any(len(s) > 1 for s in spec):
        raise UnsupportedKernelError(
            f"the kernel contraction {spec} has no SQL form; kernels support elementwise "
            f"products, scalar-vector products and dot products of vectors")
    if spec[2] == "":
        width = max(len(e.lanes or [0]) for e in ins)
        terms = [f"({a.lane(k)} * {b.lane(k)})" for k in range(width)]
        return Expr(out.dtype, text="(" + " + ".join(terms) + ")")
    return Expr(out.dtype, lanes=[f"({a.lane(k)} * {b.lane(k)})"
                                  for k in range(out.shape[0])])


def _zeros(dialect, out, ins, **params):
    return constant_expr(np.zeros(out.shape, out.dtype), dialect)


def _reshape(dialect, out, ins, shape):
    (x,) = ins
    if out.ndim == 0:
        return Expr(out.dtype, text=x.lane(0))
    if out.ndim == 1 and out.shape[0] == len(x.lanes or [0]):
        return Expr(out.dtype, lanes=[x.lane(k) for k in range(out.shape[0])])
    raise UnsupportedKernelError(f"a kernel reshape to {shape} has no SQL form")


def _concatenate(dialect, out, ins, axis):
    return Expr(out.dtype, lanes=[l for e in ins for l in e.lanes])


SQL_RULES = {
    "negative": _elementwise(lambda d, x: f"(-{x})"),
    "exp": _fn("exp"),
    "expm1": _elementwise(lambda d, x: f"(exp({x}) - 1)"),
    "log": _fn("ln"),
    "log1p": _elementwise(lambda d, x: d.log1p(x)),
    "sqrt": _fn("sqrt"),
    "square": _elementwise(lambda d, x: f"({x} * {x})"),
    "reciprocal": _elementwise(lambda d, x: f"({d.float_literal(1.0)} / {x})"),
    "abs": _fn("abs"),
    "sign": _elementwise(lambda d, x: f"CAST(sign({x}) AS DOUBLE)"),
    "sin": _fn("sin"), "cos": _fn("cos"), "tan": _fn("tan"),
    "sinh": _fn("sinh"), "cosh": _fn("cosh"), "tanh": _fn("tanh"),
    "arctan": _fn("atan"), "arcsin": _fn("asin"), "arccos": _fn("acos"),
    "floor": _elementwise(lambda d, x: f"CAST(floor({x}) AS DOUBLE)"),
    "ceil": _elementwise(lambda d, x: f"CAST(ceil({x}) AS DOUBLE)"),
    "add": _op("+"), "subtract": _op("-"), "multiply": _op("*"), "true_divide": _op("/"),
    "power": _fn("pow"), "maximum": _fn("greatest"), "minimum": _fn("least"),
    "arctan2": _fn("atan2"),
    "hypot": _elementwise(lambda d, x, y: f"sqrt({x} * {x} + {y} * {y})"),
    "logaddexp": _elementwise(_logaddexp),
    "mul_zero_safe": _elementwise(
        lambda d, t, f: f"(CASE WHEN {t} = 0 THEN {d.float_literal(0.0)} ELSE {t} * {f} END)"),
    "less": _op("<"), "less_equal": _op("<="), "greater": _op(">"),
    "greater_equal": _op(">="), "equal": _op("="), "not_equal": _op("<>"),
    "logical_and": _op("AND", numeric=False), "logical_or": _op("OR", numeric=False),
    "logical_not": _elementwise(lambda d, x: f"(NOT {x})", numeric=False),
    "select": _elementwise(lambda d, c, x, y: f"(CASE WHEN {c} THEN {x} ELSE {y} END)",
                           numeric=False),
    "convert": _convert,
    "stop_gradient": _elementwise(lambda d, x: x, numeric=False),
    "broadcast_to": _broadcast,
    "reshape": _reshape,
    "concatenate": _concatenate,
    "reduce_sum": _reduce(lambda ls: "(" + " + ".join(ls) + ")"),
    "reduce_max": _reduce(lambda ls: f"greatest({', '.join(ls)})"),
    "reduce_min": _reduce(lambda ls: f"least({', '.join(ls)})"),
    "contract": _contract,
    "zeros_like": _zeros,
}
