"""`jit`: trace once per input signature, simplify, generate Python source, compile.

    step = cr.jit(cr.value_and_grad(loss))      # traced on the first call per shapes/dtypes
    print(cr.source(cr.grad(loss), params, x, y))  # the derivative as Python source

A jitted function is traced with abstract values (shapes and dtypes only) the first
time it sees an input signature: the pytree structure of the arguments, the shape and
dtype of every leaf, and the values of the static arguments (`static_argnums`,
`static_argnames`). The
graph is simplified (`transforms.simplify`) and turned into a Python function that
calls NumPy directly (`codegen`); later calls with the same signature run that
function and nothing else of chainrule.

Composition: `jit(grad(f))` traces grad(f) abstractly. When a jitted function is
called with traced values (`grad(jit(f))`, `hessian(jit(f))`, `jit` inside `jit`), its
cached graph is evaluated on them instead, so the enclosing transformation records it
and differentiates it. A function that closes over traced values of an enclosing
transformation is traced on every call and evaluated the same way.

As with any tracing compiler, Python code that does not involve the traced arguments
runs once, while tracing: its results (random numbers included) are constants of the
compiled function, and its side effects (printing, appending to a list) happen on the
first call of each signature only.
"""
from __future__ import annotations

import functools
import inspect
import linecache
import time
from collections import namedtuple

import numpy as np

from .core.errors import ChainruleError, ConcretizationError
from .core.ir import Aval
from .core.pytree import tree_flatten, tree_unflatten
from .core.trace import _PACKAGE_DIR, Tracer, eval_graph, new_trace, user_source
from .codegen.python import _leaf_paths, generate, name_user_variables, tree_source
from .transforms.simplify import dce, simplify

CacheInfo = namedtuple("CacheInfo", "hits misses size")


class _Entry:
    """One input signature: the traced graph and its compiled function."""
    __slots__ = ("graph", "out_tree", "module", "fn", "structured_in", "structured_out",
                 "seconds")


def _leaf_value(x, where):
    if isinstance(x, (np.ndarray, Tracer)):
        return x
    if isinstance(x, (bool, int, float, complex, np.generic)):
        return np.asarray(x)
    raise ChainruleError(
        f"jit: {where} is a {type(x).__name__}, not an array or a number; pass arrays "
        f"(or pytrees of them), or mark a Python argument static with static_argnums")


def _locate(error: ConcretizationError) -> ConcretizationError:
    """The error with the user's file, line and code that needed a value."""
    if getattr(error, "located", False):
        return error
    place = None
    tb = error.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not filename.startswith(_PACKAGE_DIR):
            place = (filename, tb.tb_lineno)
        tb = tb.tb_next
    if place is None:
        return error
    code = linecache.getline(*place).strip()
    shown = f": `{code}`" if code else ""
    located = ConcretizationError(f"{place[0]}, line {place[1]}{shown}: {error}")
    located.located = True
    return located


class Jitted:
    """A function compiled per input signature (see the module docstring)."""

    def __init__(self, fun, static_argnums=(), static_argnames=()):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.static_argnums = (static_argnums,) if isinstance(static_argnums, int) \
            else tuple(static_argnums)
        self.static_argnames = (static_argnames,) if isinstance(static_argnames, str) \
            else tuple(static_argnames)
        self._cache: dict = {}
        # The same entries for calls whose arguments are all arrays, keyed by their
        # shapes and dtypes alone: such calls skip flattening.
        self._arrays_only: dict = {}
        self._hits = self._misses = 0
        self.last_compile_seconds = None    # {"trace", "simplify", "codegen"}: seconds
        try:
            params = inspect.signature(fun).parameters.values()
            self._names = [p.name for p in params
                           if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError):
            self._names = []

    def __get__(self, instance, owner=None):
        """As a method: the instance is the first argument (make it a pytree, or static
        with static_argnums=0)."""
        return self if instance is None else functools.partial(self, instance)

    def cache_info(self) -> CacheInfo:
        return CacheInfo(self._hits, self._misses, len(self._cache))

    # ---- signature
    def _split(self, args, kwargs):
        n = len(args)
        if any(not -n <= i < n for i in self.static_argnums):
            raise ChainruleError(f"jit: static_argnums {self.static_argnums} out of range "
                                 f"for {n} positional argument(s)")
        static = sorted({i % n for i in self.static_argnums})
        statics = tuple((i, args[i]) for i in static) + tuple(
            (k, kwargs[k]) for k in self.static_argnames if k in kwargs)
        kwargs = {k: v for k, v in kwargs.items() if k not in self.static_argnames}
        try:
            hash(statics)
        except TypeError:
            bad, value = next((i, a) for i, a in statics if not _hashable(a))
            raise ChainruleError(
                f"jit: static argument {bad} ({type(value).__name__}) is not "
                f"hashable; pass a tuple instead of a list, or make it a dynamic "
                f"argument") from None
        dynamic = tuple(a for i, a in enumerate(args) if i not in static)
        leaves, tree = tree_flatten((dynamic, kwargs))
        leaves = [_leaf_value(x, f"argument leaf {k}") for k, x in enumerate(leaves)]
        key = (tree, tuple((x.shape, x.dtype) for x in leaves), statics)
        return key, dynamic, leaves, tree, statics

    def __call__(self, *args, **kwargs):
        if not kwargs and not self.static_argnums and all(
                type(a) is np.ndarray for a in args):
            entry = self._arrays_only.get(tuple([(a.shape, a.dtype) for a in args]))
            if entry is not None:
                self._hits += 1
                outs = entry.fn(*args)
                return outs if entry.structured_out else tree_unflatten(entry.out_tree, outs)
        key, dynamic, leaves, tree, statics = self._split(args, kwargs)
        entry = self._cache.get(key)
        if entry is None:
            entry = self._trace(leaves, tree, statics, len(args))
            if entry.fn is None:                      # closes over traced values
                return tree_unflatten(entry.out_tree,
                                      eval_graph(entry.graph, entry.graph.consts, leaves))
            self._cache[key] = entry
            self._misses += 1
            if entry.structured_in and not kwargs and not statics and all(
                    type(a) is np.ndarray for a in args):
                self._arrays_only[tuple([(a.shape, a.dtype) for a in args])] = entry
        else:
            self._hits += 1
        if any(isinstance(x, Tracer) for x in leaves):
            outs = eval_graph(entry.graph, entry.graph.consts, leaves)
            return tree_unflatten(entry.out_tree, outs)
        outs = entry.fn(*dynamic) if entry.structured_in else entry.fn(*leaves)
        return outs if entry.structured_out else tree_unflatten(entry.out_tree, outs)

    # ---- tracing and compiling
    def _arg_names(self, nargs, static):
        return [self._names[i] if i < len(self._names) else f"arg{i}"
                for i in range(nargs) if i not in dict(static)]

    def _trace(self, leaves, tree, statics, nargs):
        names = self._arg_names(nargs, statics)
        paths = [] if tree.children[1].children else [
            _leaf_paths(td, n, n) for td, n in zip(tree.children[0].children, names)]
        hints = [h for p in paths if p is not None for _, h in p] \
            if paths and all(p is not None for p in paths) else None
        start = time.perf_counter()
        call_site = user_source()
        with new_trace(abstract=True, record_source=True) as trace:
            tracers = [trace.new_input(Aval(x.shape, x.dtype),
                                       None if hints is None else hints[k])
                       for k, x in enumerate(leaves)]
            dynamic, kw = tree_unflatten(tree, tracers)
            full, it = [], iter(dynamic)
            static = dict(statics)
            kw.update((k, v) for k, v in statics if isinstance(k, str))
            for i in range(nargs):
                full.append(static[i] if i in static else next(it))
            try:
                out = self.fun(*full, **kw)
            except ConcretizationError as e:
                raise _locate(e) from None
            out_leaves, out_tree = tree_flatten(out)
            graph = trace.graph([t._var for t in tracers], out_leaves)
        for e in graph.eqns:        # recorded by a transformation, not by a line of fun
            if e.source == call_site:
                e.source = None
        entry = _Entry()
        name_user_variables(graph)
        entry.graph, entry.out_tree = dce(graph)[0], out_tree
        entry.fn = entry.module = None
        if any(isinstance(c, Tracer) for c in graph.consts):
            return entry
        entry.structured_in = hints is not None
        entry.structured_out = tree_source(out_tree, ["x"] * out_tree.num_leaves) is not None
        args = list(zip(names, tree.children[0].children)) if entry.structured_in else None
        traced = time.perf_counter()
        simplified = simplify(entry.graph)
        simplified_at = time.perf_counter()
        entry.module = generate(simplified, _function_name(self.fun), args,
                                out_tree if entry.structured_out else None)
        entry.fn = entry.module.load()
        entry.seconds = {"trace": traced - start, "simplify": simplified_at - traced,
                         "codegen": time.perf_counter() - simplified_at}
        self.last_compile_seconds = entry.seconds
        return entry

    def source(self, *args, **kwargs) -> str:
        """The generated Python source for these arguments."""
        key, dynamic, leaves, tree, statics = self._split(args, kwargs)
        entry = self._trace(leaves, tree, statics, len(args))
        if entry.module is None:
            raise ChainruleError(
                "source: the function closes over values traced by an enclosing "
                "transformation, so it has no standalone source; pass them as arguments")
        return entry.module.source


def _hashable(x) -> bool:
    try:
        hash(x)
        return True
    except TypeError:
        return False


def _function_name(fun) -> str:
    name = getattr(fun, "__name__", "f")
    return "f" if name == "<lambda>" else name


def jit(fun, static_argnums=(), static_argnames=()):
    """fun compiled to NumPy source per input signature (see the module docstring).
    static_argnums / static_argnames: positions / keyword names of arguments that are
    Python values (hashable) rather than arrays; each new value traces again."""
    return Jitted(fun, static_argnums, static_argnames)


def source(fun, *args, static_argnums=(), static_argnames=(), **kwargs) -> str:
    """The Python source that `jit(fun)` runs for these arguments: a module importing
    NumPy (and scipy.special, where fun uses it) and defining one function."""
    jitted = fun if isinstance(fun, Jitted) else Jitted(fun, static_argnums,
                                                         static_argnames)
    return jitted.source(*args, **kwargs)
