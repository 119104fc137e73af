"""Straight-line NumPy code for one elimination order.

The generated function takes the flat inputs and returns the Jacobian blocks
`[output][input]`. It has three parts, each one statement a line: the primal
computation (every equation of the traced graph), the local partials of every edge,
then one statement per (predecessor, successor) pair of each eliminated vertex, in the
order given. Blocks are held as

    diagonal  the elementwise factors: a flat vector for vertices of several scalars,
              the value itself for scalar vertices (so a leading batch axis on
              programs of scalars just broadcasts through every line), or a literal;
    matrix    a 2-d array (rows: scalars of the successor, columns: of the predecessor).

Unused statements are dropped; multiplying by an exact constant 1 is not written.
"""
from __future__ import annotations

import functools
import keyword

import numpy as np

from ..core.ir import Literal, Namer, Var
from ..core.primitive import impl_rules
from ..core.trace import eval_graph

ONE = "1.0"


class _Block:
    """A Jacobian block in generated code: an expression name and its layout."""
    __slots__ = ("name", "layout")

    def __init__(self, name, layout):
        self.name, self.layout = name, layout

    @property
    def is_one(self):
        return self.name == ONE


class Emitter:
    """Collects the statements of the generated function and the objects it uses."""

    def __init__(self):
        self.lines = []          # (defined names, used names, code)
        self.namespace = {"np": np}
        self.namer = Namer()
        self.namer.used.update(keyword.kwlist + ["np"])
        self.counter = 0

    def fresh(self, stem):
        self.counter += 1
        while f"{stem}{self.counter}" in self.namer.used:
            self.counter += 1
        self.namer.used.add(f"{stem}{self.counter}")
        return f"{stem}{self.counter}"

    def const(self, value, stem="c"):
        name = self.fresh(stem)
        self.namespace[name] = value
        return name

    def emit(self, defined, used, code):
        self.lines.append((list(defined), [u for u in used if u.isidentifier()], code))

    # ------------------------------------------------------------------ equations
    def atom(self, a, env):
        if isinstance(a, Literal):
            v = a.value
            if np.ndim(v) == 0:
                return repr(v.item() if isinstance(v, np.generic) else v)
            return self.const(np.asarray(v))
        return env[a]

    def equation(self, eqn, env, args=None):
        args = [self.atom(a, env) for a in eqn.inputs] if args is None else args
        impl = impl_rules[eqn.prim]
        if getattr(np, getattr(impl, "__name__", ""), None) is impl and not eqn.params:
            fn = f"np.{impl.__name__}"
        else:
            fn = self.const(functools.partial(impl, **eqn.params), eqn.prim.name + "_")
        outs = []
        for v in eqn.outputs:
            env[v] = self.namer(v) if v not in env else env[v]
            outs.append(env[v])
        target = ", ".join(outs) + ("," if eqn.prim.multiple_results and len(outs) == 1
                                    else "")
        self.emit(outs, args + [fn], f"{target} = {fn}({', '.join(args)})")

    # ------------------------------------------------------------------ partials
    def rule_on_ones(self, part, env):
        """The rule graph of an elementwise partial applied to a tangent of ones,
        simplifying products with that one; returns the expression of the diagonal."""
        g = part.rule_graph
        inner = dict(zip(g.invars[:-1], _rule_args(part, env)))
        inner.update((v, self.const(c)) for v, c in zip(g.constvars, g.consts))
        inner[g.invars[-1]] = ONE
        for e in g.eqns:
            args = [self.atom(a, inner) for a in e.inputs]
            name = e.prim.name
            if name in ("multiply", "mul_zero_safe") and ONE in args:
                inner[e.outputs[0]] = args[1] if args[0] == ONE else args[0]
            elif name in ("broadcast_to", "convert") and args[0] == ONE:
                inner[e.outputs[0]] = ONE
            elif name == "negative" and args[0] == ONE:
                inner[e.outputs[0]] = "-1.0"
            else:
                self.equation(e, inner, args)
        return self.atom(g.outvars[0], inner)

    def partial_block(self, part, env, in_aval, out_aval) -> _Block:
        if part.kind == "constant":
            m = part.matrix
            if m.shape[0] == m.shape[1] and np.count_nonzero(m - np.diag(np.diag(m))) == 0:
                d = np.diag(m)
                if d.size and np.all(d == d[0]) and np.isfinite(d[0]):
                    return _Block(ONE if d[0] == 1 else repr(float(d[0])), "diagonal")
                return _Block(self.const(d), "diagonal")
            return _Block(self.const(m), "matrix")
        if part.kind == "diagonal":
            d = self.rule_on_ones(part, env)
            if part.broadcast is None:
                return self.flat_diagonal(d, out_aval.shape)
            name = self.fresh("d")
            shape, bcast = out_aval.shape, self.const(part.broadcast)
            self.emit([name], [d, bcast],
                      f"{name} = np.reshape(np.broadcast_to({d}, {shape}), "
                      f"({out_aval.size}, 1)) * {bcast}")
            return _Block(name, "matrix")
        name = self.fresh("d")
        probe = self.const(functools.partial(_probe_dense, part.rule_graph, in_aval),
                           "probe_")
        args = _rule_args(part, env)
        self.emit([name], args + [probe], f"{name} = {probe}({', '.join(args)})")
        return _Block(name, "matrix")

    def flat_diagonal(self, d, shape) -> _Block:
        """Diagonals of vertices with more than one scalar are kept as flat vectors;
        scalar vertices keep theirs as is (so a batch axis broadcasts through)."""
        if shape == () or _is_literal(d):
            return _Block(d, "diagonal")
        name = self.fresh("d")
        self.emit([name], [d], f"{name} = np.ravel(np.broadcast_to({d}, {shape}))")
        return _Block(name, "diagonal")

    # ------------------------------------------------------------------ block algebra
    def multiply(self, after: _Block, before: _Block, mid_shape: tuple) -> _Block:
        if after.is_one and after.layout == "diagonal":
            return before
        if before.is_one and before.layout == "diagonal":
            return after
        name = self.fresh("p")
        a, b = after.name, before.name
        if after.layout == before.layout == "diagonal":
            code, layout = f"{a} * {b}", "diagonal"
        elif after.layout == "diagonal":
            code, layout = f"{_column(a, mid_shape)} * {b}", "matrix"
        elif before.layout == "diagonal":
            row = b if _is_literal(b) else f"{_column(b, mid_shape)}.T"
            code, layout = f"{a} * {row}", "matrix"
        else:
            code, layout = f"{a} @ {b}", "matrix"
        self.emit([name], [a, b], f"{name} = {code}")
        return _Block(name, layout)

    def add(self, x: _Block | None, y: _Block, shape: tuple) -> _Block:
        if x is None:
            return y
        name = self.fresh("s")
        if x.layout == y.layout:
            code, layout = f"{x.name} + {y.name}", x.layout
        else:
            d, m = (x, y) if x.layout == "diagonal" else (y, x)
            m_size = int(np.prod(shape, dtype=np.int64))
            code = f"{m.name} + np.diag({_column(d.name, shape)}[:, 0])" \
                if not _is_literal(d.name) else f"{m.name} + {d.name} * np.eye({m_size})"
            layout = "matrix"
        self.emit([name], [x.name, y.name], f"{name} = {code}")
        return _Block(name, layout)

    # ------------------------------------------------------------------ output
    def source(self, fn_name, params, results) -> str:
        live = set(results)
        kept = []
        for defined, used, code in reversed(self.lines):
            if live.intersection(defined):
                kept.append((defined, used, code))
                live.update(used)
        kept.reverse()
        # Free every temporary right after its last use, so that large (batched)
        # arrays are recycled instead of all staying alive until the return.
        local = {n for defined, _, _ in kept for n in defined} | set(params)
        last_use = {}
        for i, (_, used, _) in enumerate(kept):
            for n in used:
                if n in local:
                    last_use[n] = i
        body = []
        for i, (_, _, code) in enumerate(kept):
            body.append(code)
            dead = sorted(n for n, j in last_use.items() if j == i and n not in results)
            if dead and i < len(kept) - 1:
                body.append("del " + ", ".join(dead))
        body = "\n".join("    " + c for c in body)
        return f"def {fn_name}({', '.join(params)}):\n{body}\n    return _results\n"


def _is_literal(expr) -> bool:
    return not expr.isidentifier()


def _column(diagonal, shape):
    """A diagonal block (flat, or a scalar) as an n x 1 column (a literal stays one)."""
    if _is_literal(diagonal):
        return diagonal
    n = int(np.prod(shape, dtype=np.int64))
    return f"np.reshape(np.broadcast_to({diagonal}, ({n},)), ({n}, 1))"


def _rule_args(part, env):
    e = part.eqn
    args = [env[a] for a in e.inputs if isinstance(a, Var)]
    return args + [env[v] for v in e.outputs]


def _probe_dense(rule_graph, in_aval, *values):
    """A dense block: the rule applied to each basis tangent, one column each."""
    cols = []
    for c in range(in_aval.size):
        basis = np.zeros(in_aval.size, in_aval.dtype)
        basis[c] = 1
        with np.errstate(all="ignore"):
            out = eval_graph(rule_graph, rule_graph.consts,
                             list(values) + [basis.reshape(in_aval.shape)])[0]
        cols.append(np.ravel(out))
    return np.stack(cols, axis=1)


def generate(lin, order, fn_name="cross_country_jacobian"):
    """Source and namespace of a function computing the Jacobian blocks of `lin`
    (a LinearizedGraph) by eliminating `order` (1-based vertex numbers)."""
    topo, graph = lin.topology, lin.graph
    em = Emitter()
    env = {}
    params = [em.namer(v) for v in graph.invars]
    env.update(zip(graph.invars, params))
    for v, c in zip(graph.constvars, graph.consts):
        env[v] = em.const(c, "k")
    for e in graph.eqns:
        em.equation(e, env)

    avals = [v.aval for v in lin.nodes]
    blocks = {}
    for (i, k), parts in lin.partials.items():
        for part in parts:
            b = em.partial_block(part, env, avals[i], avals[k])
            blocks[i, k] = em.add(blocks.get((i, k)), b, avals[k].shape)

    preds = {}
    succs = {}
    for (i, k) in blocks:
        preds.setdefault(k, set()).add(i)
        succs.setdefault(i, set()).add(k)

    def eliminate(j, keep=False):
        for k in sorted(succs.get(j, ())):
            after = blocks[j, k]
            for i in sorted(preds.get(j, ())):
                prod = em.multiply(after, blocks[i, j], avals[j].shape)
                blocks[i, k] = em.add(blocks.get((i, k)), prod, avals[k].shape)
                preds.setdefault(k, set()).add(i)
                succs.setdefault(i, set()).add(k)
            preds[k].discard(j)
            del blocks[j, k]
        succs[j] = set()
        if not keep:
            for i in preds.get(j, ()):
                succs[i].discard(j)
                del blocks[i, j]
            preds[j] = set()

    for v in order:
        eliminate(topo.node(v))
    for node in sorted(set(topo.outputs)):
        if succs.get(node):
            eliminate(node, keep=True)

    results, rows = [], []
    node_of = {v: n for n, v in enumerate(lin.nodes)}
    first = params[0]
    batch = f"np.shape({first})" if avals[0].ndim == 0 else \
        f"np.shape({first})[:np.ndim({first}) - {avals[0].ndim}]"
    batched = lambda shape: batch if shape == () else f"{batch} + {shape}"
    for a in lin.out_atoms:
        row = []
        for i in range(topo.n_inputs):
            name = em.fresh("J")
            row.append(name)
            out_aval, in_aval = a.aval, avals[i]
            shape = out_aval.shape + in_aval.shape
            node = node_of.get(a) if isinstance(a, Var) else None
            if node == i:
                eye = em.const(np.eye(in_aval.size).reshape(shape))
                code, used = f"np.broadcast_to({eye}, {batched(shape)}).copy()", [eye, first]
            elif (i, node) in blocks:
                b = blocks[i, node]
                code, used = _as_jacobian(b, out_aval, in_aval, first), [b.name, first]
            else:
                code, used = f"np.zeros({batched(shape)})", [first]
            em.emit([name], used, f"{name} = {code}")
        rows.append(row)
        results += row
    em.emit(["_results"], results,
            "_results = [" + ", ".join("[" + ", ".join(r) + "]" for r in rows) + "]")
    return em.source(fn_name, params, ["_results"]), em.namespace


def _as_jacobian(block, out_aval, in_aval, first_param):
    """The expression giving the block shaped batch + out.shape + in.shape."""
    n_out, n_in = out_aval.size, in_aval.size
    shape = out_aval.shape + in_aval.shape
    if block.layout == "diagonal":
        if out_aval.shape == () and in_aval.shape == ():
            return f"np.broadcast_to({block.name}, np.shape({first_param})).copy()"
        return f"np.reshape(np.diag(np.broadcast_to({block.name}, ({n_out},))), {shape})"
    return f"np.reshape({block.name}, {shape})" if (n_out, n_in) != shape else block.name
