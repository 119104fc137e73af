"""Tracing: running a user's NumPy function on tracers to record a Graph.

Traces nest. Each transformation (`grad`, `jvp`, `jit`, ...) opens a trace one level
above the current ones; an operation records into the highest-level trace among its
arguments, and everything from lower levels (arrays, tracers of enclosing transforms) is
a constant of that trace. This is what makes `grad(grad(f))` and closures correct.

A tracer of a *concrete* trace carries its value, and that value is an object of the
level below (a NumPy array at the bottom, or a tracer of the enclosing trace). Computing
the value of an operation is therefore binding the same primitive one level down, and
Python `if`/`while` on values works. A tracer of an *abstract* trace (jit, linear
graphs) carries only its shape and dtype.

Tracers take part in NumPy's own dispatch (`__array_ufunc__`, `__array_function__`)
and in Python's operators; the op modules register what each NumPy function means in
`handlers`.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager

import numpy as np

from .errors import (ConcretizationError, LeakedTracerError, TracerConversionError,
                     unsupported_function)
from .ir import Aval, Eqn, Graph, Literal, Var, aval_of

# NumPy function, ufunc, or method name ("getitem", "setitem", "astype") -> handler.
handlers: dict = {}
# Functions called with a key that has no handler; each may register one on demand (for
# a library's functions, which a user can only pass in once the library is imported).
handler_loaders: list = []


def find_handler(key):
    """The handler of a NumPy function, ufunc or method name, or None."""
    h = handlers.get(key)
    if h is None:
        for load in handler_loaders:
            load(key)
        h = handlers.get(key)
    return h

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_trace_stack: list = []


def user_source():
    """(filename, line number) of the innermost frame outside chainrule, or None."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    return None if frame is None else (frame.f_code.co_filename, frame.f_lineno)


def _library_caller() -> str | None:
    """The function of an installed library (not NumPy, not chainrule) that the user's
    code called and that is running NumPy on a tracer right now, as `module.function`;
    None when the user's own code is. Such functions convert their arguments with
    np.asarray. (Only on the way to an error: nothing here runs at import.)"""
    import sysconfig
    numpy_dir = os.path.dirname(np.__file__)
    library_dirs = tuple({sysconfig.get_paths()[k] for k in ("purelib", "platlib")})
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith((_PACKAGE_DIR,
                                                                     numpy_dir)):
        frame = frame.f_back
    entry = None
    while frame is not None and frame.f_code.co_filename.startswith(library_dirs) and \
            not frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        entry, frame = frame, frame.f_back
    return None if entry is None else \
        f"{entry.f_globals.get('__name__', '?')}.{entry.f_code.co_name}"


class Trace:
    """Records equations. `abstract` traces know shapes only; concrete ones keep every
    Var's value in `values` (the residuals that reverse mode reuses)."""

    def __init__(self, level: int, abstract: bool, record_source: bool):
        self.level = level
        self.abstract = abstract
        self.record_source = record_source
        self.eqns: list = []
        self.constvars: list = []
        self.consts: list = []
        self.values: dict = {}
        self._consts_by_key: dict = {}
        self.active = True

    def new_input(self, x, hint=None) -> "Tracer":
        aval = x if isinstance(x, Aval) else aval_of(x)
        value = None if self.abstract else x
        var = Var(aval, hint)
        self.values[var] = value
        return Tracer(self, var, value)

    def atom(self, x):
        """The graph atom for x: its Var, a Literal, or a constvar bound to x."""
        if isinstance(x, Tracer):
            if x._trace is self:
                return x._var
            if not x._trace.active:
                raise LeakedTracerError(
                    "a traced value escaped the function it belongs to and was used "
                    "afterwards; return it from the function instead of storing it")
            key = x._version()
            x = x._snapshot()
        elif isinstance(x, np.generic) or (isinstance(x, np.ndarray) and x.ndim == 0):
            return Literal(x[()] if isinstance(x, np.ndarray) else x)
        elif isinstance(x, (bool, int, float, complex)):
            return Literal(x)
        else:
            key = id(x)
        var = self._consts_by_key.get(key)
        if var is None:
            var = Var(aval_of(x))
            self._consts_by_key[key] = var
            self.constvars.append(var)
            self.consts.append(x)
            self.values[var] = x
        return var

    def process(self, prim, args, params):
        atoms = [a._var if type(a) is Tracer and a._trace is self else self.atom(a)
                 for a in args]
        source = (attributed_source or user_source()) if self.record_source else None
        if self.abstract:
            outs = [Var(av) for av in prim.shape(*[a.aval for a in atoms], **params)]
            self.eqns.append(Eqn(prim, atoms, outs, params, source))
            if prim.multiple_results:
                return [Tracer(self, v, None) for v in outs]
            return Tracer(self, outs[0], None)
        values = self.values
        ins = [a.value if type(a) is Literal else values[a] for a in atoms]
        if any(isinstance(v, Tracer) for v in ins):
            out = prim.bind(*ins, **params)
        else:
            out = prim.impl(*ins, **params)
        vals = list(out) if prim.multiple_results else [out]
        outs = [Var(aval_of(v)) for v in vals]
        self.eqns.append(Eqn(prim, atoms, outs, params, source))
        for v, val in zip(outs, vals):
            values[v] = val
        tracers = [Tracer(self, v, val) for v, val in zip(outs, vals)]
        return tracers if prim.multiple_results else tracers[0]

    def graph(self, in_vars, outs) -> Graph:
        out_atoms = [self.atom(o) for o in outs]
        return Graph(list(self.constvars), list(in_vars), list(self.eqns), out_atoms,
                     list(self.consts))


attributed_source = None


class DerivedSource(tuple):
    """The (filename, lineno) of an equation recorded by a derivative rule of the
    equation on that line (equal to the plain source, but tells them apart)."""
    __slots__ = ()


class attributed_to:
    """While active, equations recorded by traces that keep sources are attributed to
    `source` (the user's line of the equation whose derivative rule is running), so
    that generated derivative code can name the primal line it comes from."""
    __slots__ = ("source", "saved")

    def __init__(self, source):
        self.source = source

    def __enter__(self):
        global attributed_source
        self.saved = attributed_source
        if self.source is not None:
            attributed_source = DerivedSource(self.source)

    def __exit__(self, *exc):
        global attributed_source
        attributed_source = self.saved


def bind(prim, args, params):
    """Applies prim: records it in the innermost trace among args, or runs it."""
    top = None
    for a in args:
        if isinstance(a, Tracer) and (top is None or a._trace.level > top.level):
            top = a._trace
    if top is None:
        return prim.impl(*args, **params)
    if not top.active:
        raise LeakedTracerError(
            f"`{prim.name}` was applied to a traced value that escaped the function it "
            f"belongs to; return the value from the function instead of storing it")
    return top.process(prim, args, params)


def open_traces() -> tuple:
    """The traces open now, outermost first (the transformations running)."""
    return tuple(_trace_stack)


@contextmanager
def new_trace(abstract: bool = False, record_source: bool = False, kind=None):
    """Opens a trace one level above the current ones (a `Trace`, or another kind of
    trace with the same constructor, such as the JVP trace of forward mode)."""
    level = _trace_stack[-1].level + 1 if _trace_stack else 1
    inherit = bool(_trace_stack) and _trace_stack[-1].record_source
    trace = (kind or Trace)(level, abstract, record_source or inherit)
    _trace_stack.append(trace)
    try:
        yield trace
    finally:
        _trace_stack.pop()
        trace.active = False


def trace_flat(fn, args, abstract=False, hints=None):
    """Runs fn(*tracers) on a new trace. Returns (graph, trace, outputs) where outputs
    are what fn returned (a flat list)."""
    with new_trace(abstract) as trace:
        tracers = [trace.new_input(a, None if hints is None else hints[i])
                   for i, a in enumerate(args)]
        in_vars = [t._var for t in tracers]
        outs = fn(*tracers)
        graph = trace.graph(in_vars, outs)
    return graph, trace, outs


def eval_graph(graph: Graph, consts, args) -> list:
    """Runs the graph by binding each primitive: on arrays this computes, on tracers
    it records (so a graph can be traced into another)."""
    env = dict(zip(graph.constvars, consts))
    env.update(zip(graph.invars, args))
    read = lambda a: a.value if isinstance(a, Literal) else env[a]
    for e in graph.eqns:
        out = e.prim.bind(*[read(a) for a in e.inputs], **e.params)
        if e.prim.multiple_results:
            env.update(zip(e.outputs, out))
        else:
            env[e.outputs[0]] = out
    return [read(a) for a in graph.outvars]


def concrete(x):
    """The plain value below any tracers, or None when traced without values."""
    while isinstance(x, Tracer):
        x = x._value
    return x


def _handler(key, name):
    h = find_handler(key)
    if h is None:
        raise unsupported_function(name)
    return h


def _np_name(func) -> str:
    module = getattr(func, "__module__", None) or "numpy"
    return f"{module.replace('numpy.', 'np.').replace('numpy', 'np')}.{func.__name__}"


def _ufunc_name(ufunc) -> str:
    """np.<name> for NumPy's ufuncs; other libraries' ufuncs (scipy.special's) do not
    say which module they come from."""
    name = ufunc.__name__
    return f"np.{name}" if getattr(np, name, None) is ufunc else \
        f"{name} (a ufunc from outside NumPy)"


def _unary_op(ufunc):
    name = f"np.{ufunc.__name__}"
    return lambda self: _handler(ufunc, name)(self)


def _binary_op(ufunc, reflected=False):
    """The operator as NumPy would dispatch it to the tracer, without NumPy's detour."""
    name = f"np.{ufunc.__name__}"
    if reflected:
        return lambda self, other: _handler(ufunc, name)(other, self)
    return lambda self, other: _handler(ufunc, name)(self, other)


class Tracer:
    """Stands for an array while a function is traced. Behaves like an ndarray."""
    __slots__ = ("_trace", "_var", "_value")
    __array_priority__ = 1000
    __hash__ = None

    def __init__(self, trace, var, value):
        self._trace = trace
        self._var = var
        self._value = value

    # ---- attributes
    @property
    def aval(self):
        return self._var.aval

    shape = property(lambda self: self._var.aval.shape)
    dtype = property(lambda self: self._var.aval.dtype)
    ndim = property(lambda self: self._var.aval.ndim)
    size = property(lambda self: self._var.aval.size)
    T = property(lambda self: np.transpose(self))
    mT = property(lambda self: np.swapaxes(self, -1, -2))

    def __repr__(self):
        v = concrete(self)
        shown = "" if v is None else f" value={np.array2string(np.asarray(v), threshold=8)}"
        return f"Tracer<{self.aval}, level {self._trace.level}>{shown}"

    # ---- NumPy dispatch
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        out = kwargs.pop("out", None)
        dtype = kwargs.pop("dtype", None)
        if method == "__call__":
            handler = find_handler(ufunc)
            if handler is None or kwargs:
                name = _ufunc_name(ufunc)
                raise unsupported_function(
                    f"{name} with argument(s) {', '.join(kwargs)}" if kwargs else name)
            result = handler(*inputs)
        else:
            result = _handler((ufunc, method), f"{_ufunc_name(ufunc)}.{method}")(
                *inputs, **kwargs)
        if dtype is not None:
            result = result.astype(dtype)
        if out is None:
            return result
        target = out[0] if isinstance(out, tuple) else out
        if not isinstance(target, Tracer):
            raise TracerConversionError(
                f"np.{ufunc.__name__}(..., out=<NumPy array>) would write a traced value "
                f"into a plain array and lose its derivative; write `x = x + y` "
                f"instead of `x += y` for plain arrays")
        target._assign(result)
        return target

    def __array_function__(self, func, types, args, kwargs):
        handler = find_handler(func)
        if handler is None:
            raise unsupported_function(_np_name(func))
        if kwargs.get("out") is not None:
            raise TracerConversionError(
                f"{_np_name(func)}(..., out=...) with traced arrays: the result cannot be "
                f"written into a buffer; use the returned array instead")
        return handler(*args, **kwargs)

    def __array__(self, dtype=None, copy=None):
        library = _library_caller()
        if library is not None:
            raise TracerConversionError(
                f"a traced array ({self.aval}) was converted to a plain NumPy array inside "
                f"the library function `{library}`, which would silently drop its "
                f"derivative: chainrule cannot see through library code that converts its "
                f"arguments. Write that computation with NumPy calls, or give it a "
                f"derivative rule with chainrule.custom_vjp.")
        raise TracerConversionError(
            f"a traced array ({self.aval}) was converted to a plain NumPy array, which "
            f"would silently drop its derivative. This happens in np.array([...]) / "
            f"np.asarray(...) of traced values and when writing a traced value into a "
            f"plain array: use np.stack([...]) / np.concatenate, or start from a traced "
            f"array (e.g. np.zeros_like(x)) and assign into that.")

    # ---- conversion to Python values
    def _concrete(self, what):
        v = concrete(self)
        if v is None:
            raise ConcretizationError(
                f"{what} needs the value of a traced array ({self.aval}), but inside "
                f"`jit` only shapes and dtypes are known. Use chainrule.cond / "
                f"chainrule.while_loop / chainrule.fori_loop / chainrule.scan for "
                f"control flow that depends on values, or mark the argument static "
                f"(static_argnums).")
        return v

    def __bool__(self):
        return bool(self._concrete("Python control flow (`if`, `while`, `and`, ...)"))

    def _detaching(self, what):
        if np.issubdtype(self.dtype, np.inexact):
            raise TracerConversionError(
                f"{what} of a traced floating-point array would drop its derivative. "
                f"Keep it an array, compare arrays directly for control flow "
                f"(`if x < tol:`), or call chainrule.concrete(x) to detach it on purpose.")
        return self._concrete(what)

    def __float__(self):
        return float(self._detaching("float()"))

    def __complex__(self):
        return complex(self._detaching("complex()"))

    def __int__(self):
        return int(self._detaching("int()"))

    def __index__(self):
        return int(self._detaching("use as an index"))

    def item(self, *args):
        return np.asarray(self._detaching(".item()")).item(*args)

    def tolist(self):
        return np.asarray(self._detaching(".tolist()")).tolist()

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    # ---- in-place updates are recorded as new values bound to the same tracer
    def _assign(self, new):
        if not isinstance(new, Tracer) or new._trace is not self._trace:
            raise TracerConversionError(
                "an in-place update (`x[...] = v`, `x += v`) of an array from an "
                "enclosing function, inside a transformed inner function; write "
                "`x = x + v` (or a functional update) so the outer value is untouched")
        if new.shape != self.shape:
            raise ValueError(f"in-place update changes shape {self.shape} -> {new.shape}")
        if new.dtype != self.dtype:
            new = new.astype(self.dtype)
        self._rebind(new)

    def _rebind(self, new):
        self._var, self._value = new._var, new._value

    def _version(self):
        """Identifies the current value; changes when an in-place update rebinds it."""
        return self._var

    def _snapshot(self):
        """A tracer frozen at the current value (what a capturing trace binds to)."""
        return Tracer(self._trace, self._var, self._value)

    def __setitem__(self, index, value):
        self._assign(_handler("setitem", "x[...] = v")(self, index, value))

    def __getitem__(self, index):
        return _handler("getitem", "x[...]")(self, index)

    def astype(self, dtype, copy=True):
        return _handler("astype", "astype")(self, dtype)

    def copy(self):
        return np.copy(self)

    # ---- methods that mirror ndarray's, by way of NumPy's functions
    def sum(self, *a, **k): return np.sum(self, *a, **k)
    def mean(self, *a, **k): return np.mean(self, *a, **k)
    def prod(self, *a, **k): return np.prod(self, *a, **k)
    def var(self, *a, **k): return np.var(self, *a, **k)
    def std(self, *a, **k): return np.std(self, *a, **k)
    def max(self, *a, **k): return np.max(self, *a, **k)
    def min(self, *a, **k): return np.min(self, *a, **k)
    def argmax(self, *a, **k): return np.argmax(self, *a, **k)
    def argmin(self, *a, **k): return np.argmin(self, *a, **k)
    def cumsum(self, *a, **k): return np.cumsum(self, *a, **k)
    def cumprod(self, *a, **k): return np.cumprod(self, *a, **k)
    def dot(self, other): return np.dot(self, other)
    def ravel(self, order="C"): return np.ravel(self, order)
    def flatten(self, order="C"): return np.ravel(self, order)
    def squeeze(self, axis=None): return np.squeeze(self, axis)
    def clip(self, a_min=None, a_max=None): return np.clip(self, a_min, a_max)
    def round(self, decimals=0): return np.round(self, decimals)
    def trace(self, *a, **k): return np.trace(self, *a, **k)
    def diagonal(self, *a, **k): return np.diagonal(self, *a, **k)
    def conj(self): return self
    def all(self, *a, **k): return np.all(self, *a, **k)
    def any(self, *a, **k): return np.any(self, *a, **k)

    def reshape(self, *shape, order="C"):
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
            shape = shape[0]
        return np.reshape(self, shape, order=order)

    def transpose(self, *axes):
        if len(axes) == 1 and not isinstance(axes[0], (int, np.integer)):
            axes = axes[0]
        return np.transpose(self, axes or None)

    def swapaxes(self, a, b): return np.swapaxes(self, a, b)
    def repeat(self, repeats, axis=None): return np.repeat(self, repeats, axis)
    def take(self, indices, axis=None): return np.take(self, indices, axis)
    def sort(self, *a, **k): raise TypeError("use np.sort(x): in-place sort is not traced")

    # ---- Python operators call the handler NumPy's dispatch would reach, directly
    __neg__ = _unary_op(np.negative)
    __abs__ = _unary_op(np.abs)
    __invert__ = _unary_op(np.invert)
    __add__, __radd__ = _binary_op(np.add), _binary_op(np.add, reflected=True)
    __sub__, __rsub__ = _binary_op(np.subtract), _binary_op(np.subtract, reflected=True)
    __mul__, __rmul__ = _binary_op(np.multiply), _binary_op(np.multiply, reflected=True)
    __truediv__ = _binary_op(np.true_divide)
    __rtruediv__ = _binary_op(np.true_divide, reflected=True)
    __floordiv__ = _binary_op(np.floor_divide)
    __rfloordiv__ = _binary_op(np.floor_divide, reflected=True)
    __mod__, __rmod__ = _binary_op(np.remainder), _binary_op(np.remainder, reflected=True)
    __pow__, __rpow__ = _binary_op(np.power), _binary_op(np.power, reflected=True)
    __matmul__ = _binary_op(np.matmul)
    __rmatmul__ = _binary_op(np.matmul, reflected=True)
    __lt__, __le__ = _binary_op(np.less), _binary_op(np.less_equal)
    __gt__, __ge__ = _binary_op(np.greater), _binary_op(np.greater_equal)
    __eq__, __ne__ = _binary_op(np.equal), _binary_op(np.not_equal)
    __and__, __rand__ = _binary_op(np.logical_and), _binary_op(np.logical_and, reflected=True)
    __or__, __ror__ = _binary_op(np.logical_or), _binary_op(np.logical_or, reflected=True)
    __xor__ = _binary_op(np.logical_xor)

    def __pos__(self):
        return self

    def __iadd__(self, o): self._assign(self + o); return self
    def __isub__(self, o): self._assign(self - o); return self
    def __imul__(self, o): self._assign(self * o); return self
    def __itruediv__(self, o): self._assign(self / o); return self
    def __ipow__(self, o): self._assign(self ** o); return self
    def __imatmul__(self, o): self._assign(self @ o); return self
