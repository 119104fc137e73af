"""Graph -> Python source -> function.

The generated module imports NumPy (as the one namespace `np`; scipy.special too when
the graph calls it) and defines one function (plus one per loop body or branch of structured control flow): one statement
per equation, names taken from the user's code (argument
names, dictionary keys, and the targets of assignments like `h = np.tanh(...)` on the
lines the equations come from), a comment with the user's source line before the
statements that come from it (the derivative's statements are tied to the primal line
they differentiate), and no dead code (the graph is simplified first).

Memory: an array of `release_bytes` or more is deleted (`del`) right after its last
use, and an elementwise ufunc writes its result into a dead operand of the same shape
and dtype (`out=`) when that buffer was made by the function itself and nothing else
still refers to it: never into an argument, a constant, or a view.

Constants that cannot be written inline (large arrays, callbacks into chainrule for
primitives without an emitter) are read from a list `consts` given to the module when
it is executed; small arrays and index tuples are written out.
"""
from __future__ import annotations

import ast
import builtins
import functools
import keyword
import linecache
import os
import re
from dataclasses import dataclass

import numpy as np

from ..core.ir import Graph, Literal, Var
from ..core.pytree import TreeDef
from ..core.trace import DerivedSource
from .emitters import NAMESPACE, Emitter, dtype_source, emitter_of

RELEASE_BYTES = 1 << 16
INLINE_ELEMENTS = 16


@dataclass
class GeneratedModule:
    """Source text of a module defining `name`, and the constants it reads."""
    source: str
    name: str
    consts: list

    def load(self):
        """Executes the module and returns its function."""
        filename = f"<chainrule {self.name} {abs(hash(self.source)):x}>"
        linecache.cache[filename] = (len(self.source), None,
                                     self.source.splitlines(True), filename)
        namespace = {"consts": self.consts}
        exec(compile(self.source, filename, "exec"), namespace)
        return namespace[self.name]


# --------------------------------------------------------------------------- names

_RESERVED = {NAMESPACE, "consts", "scipy"} | set(dir(builtins)) | set(keyword.kwlist)


def identifier(text, default="f") -> str:
    name = re.sub(r"\W", "_", str(text))
    if not name or name[0].isdigit():
        name = f"{default}_{name}" if name else default
    return name


class Names:
    """Unique Python names: user names where known, t1, t2, ... otherwise."""

    def __init__(self):
        self.used = set(_RESERVED)
        self.counter = 0

    def claim(self, wanted) -> str:
        base = identifier(wanted)
        name, k = base, 1
        while name in self.used:
            name, k = f"{base}_{k}", k + 1
        self.used.add(name)
        return name

    def fresh(self) -> str:
        while True:
            self.counter += 1
            name = f"t{self.counter}"
            if name not in self.used:
                self.used.add(name)
                return name


@functools.lru_cache(maxsize=4096)
def _assigned_name(filename, lineno):
    """The variable a source line assigns (`h = ...`, `h += ...`), or None."""
    text = linecache.getline(filename, lineno).strip()
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    if len(tree.body) != 1:
        return None
    stmt = tree.body[0]
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        target = stmt.targets[0]
    elif isinstance(stmt, (ast.AugAssign, ast.AnnAssign)):
        target = stmt.target
    else:
        return None
    if isinstance(target, ast.Name) and not isinstance(stmt.value, ast.Lambda):
        return target.id
    return None


def name_user_variables(graph: Graph) -> None:
    """Sets the hint of each Var that holds a variable of the user's code: the last
    equation of the first run of (primal) equations recorded on a line `name = ...`
    computes that name's value. Run it before simplifying, which drops equations."""
    seen = set()
    eqns = [e for e in graph.eqns if e.source is not None
            and not isinstance(e.source, DerivedSource)]
    for k, e in enumerate(eqns):
        src = e.source
        if src in seen:
            continue
        if k + 1 < len(eqns) and eqns[k + 1].source == src:
            continue
        seen.add(src)
        name = _assigned_name(*src)
        if name is not None and len(e.outputs) == 1 and e.outputs[0].hint is None:
            e.outputs[0].hint = name


def _comment(source) -> str:
    filename, lineno = source
    text = linecache.getline(filename, lineno).strip()
    what = "derivative of " if isinstance(source, DerivedSource) else ""
    return f"# {what}{os.path.basename(filename)}:{lineno}: {text}".rstrip()


# --------------------------------------------------------------------------- values as source

def _scalar_source(value) -> str:
    """Python text of a scalar; NumPy floats in their own precision's shortest form."""
    v = value.item() if isinstance(value, np.generic) else value
    if isinstance(v, float) and not np.isfinite(v):
        text = f"{NAMESPACE}.nan" if np.isnan(v) else f"{NAMESPACE}.inf"
        return text if np.isnan(v) or v > 0 else f"-{text}"
    return str(value) if isinstance(value, np.floating) else repr(v)


def literal_source(lit: Literal, others) -> str:
    """A literal as Python: bare when NumPy's promotion of the bare number gives the
    same dtype and the same value as the typed literal would (`x * 2.0`), explicit
    otherwise (`x * np.float64(2.0)` next to float32 x)."""
    value = lit.value
    text = _scalar_source(value)
    if isinstance(value, np.generic):
        shown = value.item() if not isinstance(value, np.floating) or \
            not np.isfinite(value) else float(text)
        typed = np.result_type(*others, value.dtype)
        weak = np.result_type(*others, shown)
        if typed != weak or not np.array_equal(np.asarray(shown, typed),
                                               np.asarray(value, typed), equal_nan=True):
            text = f"{dtype_source(value.dtype)}({text})"
    return f"({text})" if text.startswith("-") else text


def _array_source(value: np.ndarray) -> str | None:
    if value.size == 0 or (value.dtype.kind in "fc" and not np.all(np.isfinite(value))):
        return None
    dtype = dtype_source(value.dtype)
    first = value.flat[0]
    if value.size > 1 and np.all(value == first):
        return f"{NAMESPACE}.full({value.shape!r}, {_scalar_source(first)}, {dtype})"
    if value.size <= INLINE_ELEMENTS:
        return f"{NAMESPACE}.array({value.tolist()!r}, {dtype})"
    return None


def _const_source(value) -> str | None:
    """Python text that rebuilds a constant, or None if it must come from `consts`."""
    if isinstance(value, np.ndarray):
        return _array_source(value)
    if isinstance(value, tuple):
        parts = [_const_source(v) for v in value]
        if any(p is None for p in parts):
            return None
        return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
    if isinstance(value, slice):
        return f"slice({value.start!r}, {value.stop!r}, {value.step!r})"
    if value is None or value is Ellipsis or isinstance(value, (bool, int, float)):
        return "..." if value is Ellipsis else _scalar_source(value)
    return None


class Constants:
    """Module-level constants, in order of first use."""

    def __init__(self, names: Names):
        self.names = names
        self.lines: list = []
        self.values: list = []
        self.by_id: dict = {}

    def __call__(self, value, hint="k", note=None) -> str:
        key = id(value)
        if key in self.by_id:
            return self.by_id[key][0]
        name = self.names.claim(hint)
        text = _const_source(value)
        if text is None:
            text = f"consts[{len(self.values)}]"
            self.values.append(value)
            if note is None and isinstance(value, np.ndarray):
                note = f"{value.dtype.name}{list(value.shape)}"
        self.lines.append(f"{name} = {text}" + (f"  # {note}" if note else ""))
        self.by_id[key] = (name, value)
        return name


# --------------------------------------------------------------------------- per-equation context

class _Context:
    """What an emitter may ask about the equation it writes."""

    def __init__(self, gen, k, e, outs):
        self.gen, self.k, self.eqn = gen, k, e
        self.outs, self.out = outs, outs[0]
        self.in_avals = [a.aval for a in e.inputs]
        self.out_aval = e.outputs[0].aval

    def const(self, value) -> str:
        return self.gen.module.consts(value, "index" if isinstance(value, tuple) else "k")

    def may_overwrite(self, i) -> bool:
        return self.gen.may_overwrite(self.k, self.eqn.inputs[i], self.out_aval)

    def fresh(self) -> str:
        return self.gen.module.names.fresh()

    def function(self, graph: Graph, hint: str) -> str:
        """The name of a module-level function computing a closed sub-graph (its
        inputs are the parameters; it returns a tuple of its outputs)."""
        return self.gen.module.function(graph, hint)


def _fallback(prim, params) -> Emitter:
    """Calls the primitive's implementation, a constant of the module."""
    def emit(ctx, *args, **_):
        impl = functools.partial(prim.impl, **params)
        name = ctx.gen.module.consts(impl, f"impl_{prim.name}",
                                     note=f"{prim.name} (chainrule)")
        return f"{name}({', '.join(args)})"
    return Emitter(emit, view=True)


# --------------------------------------------------------------------------- the generator

class _Module:
    """The module being written: one namespace of names for all its functions (so a
    local never shadows a constant or a helper), its constants and helper functions."""

    def __init__(self, release_bytes):
        self.names = Names()
        self.consts = Constants(self.names)
        self.helpers: list = []
        self.imports: set = set()       # modules besides NumPy that the code names
        self.functions: dict = {}       # graph -> the name of the function written for it
        self.release_bytes = release_bytes

    def function(self, graph: Graph, hint: str) -> str:
        """The helper function computing `graph`, written once per graph."""
        from ..transforms.simplify import simplify
        if graph in self.functions:
            return self.functions[graph]
        name = self.functions[graph] = self.names.claim(hint)
        gen = _Generator(simplify(graph), self)
        params = [self.names.fresh() for _ in gen.graph.invars]
        gen.name_of.update(zip(gen.graph.invars, params))
        body = gen.statements()
        results = [gen.result(a) for a in gen.graph.outvars]
        body.append("return (" + ", ".join(results) + ("," if len(results) == 1 else "")
                    + ")")
        self.helpers.append(_def(name, params, body))
        return name


def _def(name, params, body) -> list:
    return ["", "", f"def {name}({', '.join(params)}):"] + ["    " + b for b in body]


class _Generator:
    """Liveness and buffer ownership of a graph's Vars, and its statements.

    Every Var has the set of buffers (owning Vars) it may share memory with: its own
    for results made by the function, none for arguments and constants (never ours to
    write), those of its operands for views."""

    def __init__(self, graph: Graph, module: _Module):
        self.graph = graph
        self.module = module
        self.release_bytes = module.release_bytes
        self.name_of: dict = {}
        self.outputs = {a for a in graph.outvars if isinstance(a, Var)}
        self.last_use: dict = {}
        for k, e in enumerate(graph.eqns):
            for a in e.inputs:
                if isinstance(a, Var):
                    self.last_use[a] = k
        for a in self.outputs:
            self.last_use[a] = len(graph.eqns)
        self.buffers: dict = {v: frozenset() for v in graph.invars + graph.constvars}
        self.producer: dict = {}
        for e in graph.eqns:
            self.producer.update((v, e) for v in e.outputs)
            if self.emitter(e).view:
                shared = frozenset().union(*[self.buffers[a] for a in e.inputs
                                             if isinstance(a, Var)])
                self.buffers.update((v, shared) for v in e.outputs)
            else:
                self.buffers.update((v, frozenset([v])) for v in e.outputs)
        self.buffer_last: dict = {}    # owning Var -> last use of any Var sharing it
        for v, owners in self.buffers.items():
            for r in owners:
                self.buffer_last[r] = max(self.buffer_last.get(r, -1),
                                          self.last_use.get(v, -1))

    @staticmethod
    def emitter(e) -> Emitter:
        return emitter_of(e.prim) or _fallback(e.prim, e.params)

    def nbytes(self, v) -> int:
        return v.aval.size * v.aval.dtype.itemsize

    def may_overwrite(self, k, a, out_aval) -> bool:
        """Whether equation k may write its result into operand a's buffer: made here,
        large, last used by k, not viewed after k, same shape and dtype."""
        return (isinstance(a, Var) and self.buffers.get(a) == {a} and a not in self.outputs
                and self.buffer_last.get(a) == k and a.aval == out_aval and a.aval.ndim >= 1
                and self.nbytes(a) >= self.release_bytes)

    def releases(self, v) -> bool:
        owners = self.buffers.get(v)
        return bool(owners) and v not in self.outputs and max(
            [self.nbytes(v)] + [self.nbytes(r) for r in owners]) >= self.release_bytes

    def atom(self, a, others=()) -> str:
        if not isinstance(a, Literal):
            return self.name_of[a]
        if isinstance(a.value, np.ndarray):         # a small array literal (rules' zeros)
            return self.module.consts(a.value)
        return literal_source(a, others)

    def statements(self) -> list:
        names = self.module.names
        lines, current = [], None
        for k, e in enumerate(self.graph.eqns):
            emitter = self.emitter(e)
            if emitter.imports:
                self.module.imports.add(emitter.imports)
            outs = [names.claim(v.hint) if v.hint else names.fresh()
                    if v in self.last_use else "_" for v in e.outputs]
            dtypes = [a.aval.dtype for a in e.inputs if isinstance(a, Var)]
            args = [self.atom(a, dtypes) for a in e.inputs]
            ctx = _Context(self, k, e, outs)
            reused = None
            if emitter.ufunc is not None:
                reused = next((i for i, a in enumerate(e.inputs)
                               if self.may_overwrite(k, a, ctx.out_aval)), None)
            if reused is not None:
                code = [f"{outs[0]} = {emitter.ufunc}({', '.join(args)}, out={args[reused]})"]
            else:
                code = emitter.emit(ctx, *args, **e.params)
                if isinstance(code, str):
                    single = e.prim.multiple_results and len(outs) == 1
                    code = [f"{', '.join(outs)}{',' if single else ''} = {code}"]
            where = None if e.source is None else (e.source, type(e.source))
            if where is not None and where != current:
                lines.append(_comment(e.source))
            current = where
            lines.extend(code)
            self.name_of.update(zip(e.outputs, ctx.outs))
            dead = [self.name_of[a] for a in dict.fromkeys(e.inputs)
                    if isinstance(a, Var) and self.last_use.get(a) == k and self.releases(a)
                    and (reused is None or a is not e.inputs[reused])]
            if dead:
                lines.append(f"del {', '.join(dead)}")
        return lines

    def result(self, a) -> str:
        """An output as Python; constants and read-only broadcasts are copied."""
        text = self.atom(a)
        if isinstance(a, Literal):
            return f"{NAMESPACE}.array({text})"
        if a in self.graph.invars:
            return text
        made_by = self.producer.get(a)
        if not self.buffers.get(a) or made_by is not None and made_by.prim.name == \
                "broadcast_to":
            return f"{NAMESPACE}.array({text})"
        return text


def generate(graph: Graph, name="f", args=None, out_tree=None,
             release_bytes=RELEASE_BYTES) -> GeneratedModule:
    """Python source for `graph` as a function `name`.

    args: [(parameter name, TreeDef)] when the inputs are trees of tuples, lists and
    dicts (the function then takes them as such and unpacks the leaves); None to take
    the leaves as parameters. out_tree: the TreeDef of the result (built in the
    source), or None to return a tuple of the outputs."""
    module = _Module(release_bytes)
    names = module.names
    name = names.claim(identifier(name))
    gen = _Generator(graph, module)
    head = []
    if args is None:
        params = [names.claim(v.hint or f"x{i}") for i, v in enumerate(graph.invars)]
        gen.name_of.update(zip(graph.invars, params))
    else:
        params = [names.claim(p) for p, _ in args]
        paths = [path for (_, td), p in zip(args, params) for path in _leaf_paths(td, p, p)]
        for v, (expr, hint) in zip(graph.invars, paths):
            if expr.isidentifier():
                gen.name_of[v] = expr
            else:
                gen.name_of[v] = names.claim(hint)
                head.append(f"{gen.name_of[v]} = {expr}")
    for v, c in zip(graph.constvars, graph.consts):
        gen.name_of[v] = module.consts(c)
    body = head + gen.statements()
    results = [gen.result(a) for a in graph.outvars]
    ret = tree_source(out_tree, results) if out_tree is not None else \
        "(" + ", ".join(results) + ("," if len(results) == 1 else "") + ")"
    body.append(f"return {ret}")
    lines = [f"import numpy as {NAMESPACE}"] + [f"import {m}" for m in sorted(module.imports)]
    if module.consts.lines:
        lines += [""] + module.consts.lines
    for helper in module.helpers:
        lines += helper
    lines += _def(name, params, body)
    return GeneratedModule("\n".join(lines) + "\n", name, module.consts.values)


def _leaf_paths(treedef: TreeDef, expr: str, hint: str):
    """(expression, name) for every leaf of a tree of tuples, lists, dicts and None,
    or None if the tree holds other nodes."""
    if treedef.kind is None:
        return [(expr, hint)]
    if treedef.kind in (tuple, list):
        keys = range(len(treedef.children))
        exprs = [f"{expr}[{i}]" for i in keys]
        hints = [f"{hint}_{i}" for i in keys]
    elif treedef.kind is dict:
        if not all(isinstance(k, str) for k in treedef.aux):
            return None
        exprs = [f"{expr}[{k!r}]" for k in treedef.aux]
        hints = [k if k.isidentifier() else f"{hint}_{k}" for k in treedef.aux]
    elif treedef.kind is type(None):
        return []
    else:
        return None
    out = []
    for child, e, h in zip(treedef.children, exprs, hints):
        sub = _leaf_paths(child, e, h)
        if sub is None:
            return None
        out += sub
    return out


def tree_source(treedef: TreeDef, leaves: list) -> str | None:
    """Python text building a tree of tuples, lists, dicts and None from leaf texts."""
    it = iter(leaves)

    def go(td):
        if td.kind is None:
            return next(it)
        parts = [go(c) for c in td.children]
        if td.kind is tuple:
            return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
        if td.kind is list:
            return "[" + ", ".join(parts) + "]"
        if td.kind is dict:
            return "{" + ", ".join(f"{k!r}: {p}" for k, p in zip(td.aux, parts)) + "}"
        if td.kind is type(None):
            return "None"
        raise TypeError
    try:
        return go(treedef)
    except TypeError:
        return None
