"""Graph simplification for compiled code: an explicit strategy of small passes.

Each pass maps a graph to an equivalent graph (same values for every input) and says
whether it changed anything. `simplify` applies them in this documented order, a
strategy in the sense of rewrite-strategy languages (Stratego's `repeat` and `;`):

    simplify = repeat(fold_constants ; rewrite ; cse) ; dce

- fold_constants: equations whose inputs are all constants are computed once, unless
  the result would be larger than its inputs (broadcasts and zeros stay symbolic).
- rewrite: algebraic identities, applied in one forward sweep, each firing at most
  once per equation per sweep (`repeat` iterates). Symbolic-zero tangents become
  arrays of zeros and cotangent seeds arrays of ones; "uniform" atoms (a scalar, a
  constant array holding one value, a broadcast or reshape of either) let the rules
  see through them:
    x*1, x+0, x-0, 0-x, x/1, x**1 (x*0 stays: inf*0 is nan);
    mul_zero_safe with a zero, nonzero or finite side; select on a constant condition;
    double negation, x + -y, x - -y, x * -y, c * -x, -(c*x), c * (d*x);
    (M*u)*v = M*(u*v) and M*u + M*v = M*(u+v) when u and v are smaller than M;
    a contraction with an identity or diagonal matrix, or with a transposed operand;
    transpose of transpose, reshape of reshape, broadcast of broadcast, and the
    identity reshapes, transposes, broadcasts and conversions;
    a broadcast or uniform operand of an elementwise operation (NumPy broadcasts it
    for free); sum of a broadcast or of a uniform array;
    stop_gradient (a value-only graph has no derivatives left to stop).
- cse: equal equations on equal inputs are computed once. This is also the forwarding
  of primal values to the derivative: a JVP rule that recomputes `cos(x)` reuses the
  forward pass's `cos(x)`.
- dce: equations whose outputs are never used are dropped, and unused constants.

Simplified graphs are for evaluation and code generation: because stop_gradient is
removed, differentiate the original graph, not the simplified one, or simplify with
`differentiable=True`, which keeps stop_gradient (the derivative templates do).
"""
from __future__ import annotations

import numpy as np

from ..core.ir import Aval, Eqn, Graph, Literal, Var
from ..core.primitive import Primitive
from ..core.trace import DerivedSource, Tracer
from ..ops import contraction, elementwise, reductions
from ..ops import shape as shape_ops
from ..ops.elementwise import prims as ufunc_prims

FOLD_LIMIT = 1 << 16    # never fold to a constant with more elements than its inputs + this


# --------------------------------------------------------------------------- strategy combinators

def sequence(*passes):
    """Runs passes one after the other; changed if any changed."""
    def run(graph):
        changed = False
        for p in passes:
            graph, c = p(graph)
            changed |= c
        return graph, changed
    run.__name__ = " ; ".join(p.__name__ for p in passes)
    return run


def repeat(p, limit=20):
    """Applies p until it changes nothing (at most `limit` times)."""
    def run(graph):
        changed = False
        for _ in range(limit):
            graph, c = p(graph)
            if not c:
                break
            changed = True
        return graph, changed
    run.__name__ = f"repeat({p.__name__})"
    return run


# --------------------------------------------------------------------------- rebuilding graphs

class Builder:
    """Rebuilds a graph equation by equation, with substitutions of Vars by atoms."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.subst: dict = {}
        self.eqns: list = []
        self.constvars = list(graph.constvars)
        self.consts = list(graph.consts)
        self.const_values = {v: c for v, c in zip(graph.constvars, graph.consts)
                             if not isinstance(c, Tracer)}
        self.defs: dict = {}
        self.source = None
        self.changed = False

    def read(self, a):
        while isinstance(a, Var) and a in self.subst:
            a = self.subst[a]
        return a

    def keep(self, e: Eqn, inputs):
        if any(x is not y for x, y in zip(inputs, e.inputs)):
            e = Eqn(e.prim, inputs, e.outputs, e.params, e.source)
        self.eqns.append(e)
        self.defs.update((v, e) for v in e.outputs)

    def bind(self, prim: Primitive, inputs, **params) -> Var:
        """Appends a new equation (attributed to the current source); returns its output."""
        out = Var(prim.shape(*[a.aval for a in inputs], **params)[0])
        e = Eqn(prim, list(inputs), [out], params, self.source)
        self.eqns.append(e)
        self.defs[out] = e
        return out

    def add_const(self, value) -> Var:
        v = Var(Aval(np.shape(value), np.asarray(value).dtype))
        self.constvars.append(v)
        self.consts.append(value)
        self.const_values[v] = value
        return v

    def value(self, a):
        """The constant value of an atom, or None."""
        if isinstance(a, Literal):
            return a.value
        return self.const_values.get(a)

    def finish(self) -> Graph:
        return Graph(self.constvars, list(self.graph.invars), self.eqns,
                     [self.read(a) for a in self.graph.outvars], self.consts)


def _literal(value, dtype) -> Literal:
    return Literal(np.asarray(value, dtype)[()])


# --------------------------------------------------------------------------- dce

def dce(graph: Graph):
    """Drops equations whose outputs are unused, and unused constants."""
    live = {a for a in graph.outvars if isinstance(a, Var)}
    kept = []
    for e in reversed(graph.eqns):
        if any(v in live for v in e.outputs):
            kept.append(e)
            live.update(a for a in e.inputs if isinstance(a, Var))
    kept.reverse()
    pairs = [(v, c) for v, c in zip(graph.constvars, graph.consts) if v in live]
    changed = len(kept) != len(graph.eqns) or len(pairs) != len(graph.constvars)
    return Graph([v for v, _ in pairs], graph.invars, kept, graph.outvars,
                 [c for _, c in pairs]), changed


# --------------------------------------------------------------------------- cse

def _atom_key(a):
    if isinstance(a, Literal):
        return ("literal", np.asarray(a.value).dtype.str, repr(a.value))
    return a


def cse(graph: Graph):
    """Computes equal equations on equal inputs once."""
    b = Builder(graph)
    seen: dict = {}
    for e in graph.eqns:
        inputs = [b.read(a) for a in e.inputs]
        try:
            key = (e.prim, tuple(_atom_key(a) for a in inputs),
                   tuple(sorted(e.params.items())))
            hash(key)
        except TypeError:
            key = None
        previous = seen.get(key) if key is not None else None
        if previous is not None:                  # the user's names and primal lines win
            for old, kept in zip(e.outputs, previous.outputs):
                kept.hint = kept.hint or old.hint
            if isinstance(previous.source, DerivedSource) and e.source is not None \
                    and not isinstance(e.source, DerivedSource):
                previous.source = e.source
            b.subst.update(zip(e.outputs, previous.outputs))
            b.changed = True
            continue
        if key is not None:
            seen[key] = e
        b.keep(e, inputs)
    return b.finish(), b.changed


# --------------------------------------------------------------------------- constant folding

_NO_FOLD = {shape_ops.broadcast_p, shape_ops.zeros_like_p}


def fold_constants(graph: Graph):
    """Computes equations whose inputs are all constant (scalars become Literals)."""
    b = Builder(graph)
    for e in graph.eqns:
        inputs = [b.read(a) for a in e.inputs]
        if e.prim in _NO_FOLD or not _foldable(e.prim) or not all(
                type(a) is Literal or a in b.const_values for a in inputs):
            b.keep(e, inputs)
            continue
        values = [b.value(a) for a in inputs]
        if sum(v.aval.size for v in e.outputs) > sum(map(np.size, values)) + FOLD_LIMIT:
            b.keep(e, inputs)
            continue
        with np.errstate(all="ignore"):
            out = e.prim.impl(*values, **e.params)
        outs = list(out) if e.prim.multiple_results else [out]
        for v, o in zip(e.outputs, outs):
            o = np.asarray(o, v.aval.dtype)
            b.subst[v] = Literal(o[()]) if o.ndim == 0 else b.add_const(o)
        b.changed = True
    return b.finish(), b.changed


def _foldable(prim) -> bool:
    """Only NumPy-backed primitives are folded (never user callbacks)."""
    return not prim.name.startswith("custom")


# --------------------------------------------------------------------------- algebraic rewrites

class Rewriter(Builder):
    """Builder that knows which atoms hold one value everywhere (`uniform`)."""

    def __init__(self, graph):
        super().__init__(graph)
        self.uniform_of: dict = {}
        self.identity_of: dict = {}
        self.uses: dict = {}
        for e in graph.eqns:
            for v in e.inputs:
                self.uses[v] = self.uses.get(v, 0) + 1
        for v in graph.outvars:
            self.uses[v] = self.uses.get(v, 0) + 1

    def uniform(self, a):
        """The single value held by every element of atom a, or None."""
        if isinstance(a, Literal):
            return a.value
        if a in self.uniform_of:
            return self.uniform_of[a]
        value, e = self.const_values.get(a), self.producer(a)
        u = None
        if isinstance(value, np.ndarray) and value.size and value.size == np.count_nonzero(
                value == value.flat[0]):
            u = value.flat[0]
        elif e is not None and e.prim in _SAME_ELEMENTS:
            u = self.uniform(e.inputs[0])
        elif e is not None and e.prim is shape_ops.zeros_like_p:
            u = np.zeros((), a.aval.dtype)[()]
        self.uniform_of[a] = u
        return u

    def full(self, value, aval: Aval):
        """An atom holding `value` everywhere, with the given aval."""
        lit = _literal(value, aval.dtype)
        return lit if aval.shape == () else self.bind(shape_ops.broadcast_p, [lit],
                                                      shape=aval.shape)

    def fit(self, a, aval: Aval):
        """a broadcast to aval's shape, or None if its dtype differs."""
        if a.aval.dtype != aval.dtype:
            return None
        if a.aval.shape == aval.shape:
            return a
        return self.bind(shape_ops.broadcast_p, [a], shape=aval.shape)

    def is_identity(self, a) -> bool:
        """a is a constant identity matrix."""
        if a not in self.identity_of:
            value = self.const_values.get(a) if isinstance(a, Var) else None
            self.identity_of[a] = (
                isinstance(value, np.ndarray) and value.ndim == 2
                and value.shape[0] == value.shape[1]
                and np.array_equal(value, np.eye(value.shape[0], dtype=value.dtype)))
        return self.identity_of[a]

    def diagonal(self, a):
        """True if a is an identity matrix, the vector u if a = identity * u (u of
        shape (n,), (1, n) or (n, 1)), else None."""
        if self.is_identity(a):
            return True
        e = self.producer(a)
        if e is None or e.prim is not P["multiply"] or e.outputs[0].aval != a.aval:
            return None
        n = a.aval.shape[0]
        for eye, u in (e.inputs, e.inputs[::-1]):
            if self.is_identity(eye) and isinstance(u, Var) and u.aval.shape in (
                    (n,), (1, n), (n, 1)) and u.aval.dtype == a.aval.dtype:
                return u
        return None

    def producer(self, a):
        return self.defs.get(a) if isinstance(a, Var) else None

    def single_use(self, a) -> bool:
        """a is used by one equation input only (so rewriting its user frees it)."""
        return self.uses.get(a, 0) == 1

    def negated(self, a):
        """x if a = -x, else None."""
        e = self.producer(a)
        return e.inputs[0] if e is not None and e.prim is P["negative"] else None

    def unbroadcast(self, e, inputs):
        """Operands of elementwise operations that are broadcasts are replaced by their
        source, and uniform ones by a scalar, when NumPy's own broadcasting gives the
        same result shape."""
        out_shape = e.outputs[0].aval.shape
        new = list(inputs)
        for i, a in enumerate(inputs):
            if isinstance(a, Literal):
                continue
            d, u = self.producer(a), self.uniform(a)
            if u is not None:
                smaller = _literal(u, a.aval.dtype)
            elif d is not None and d.prim is shape_ops.broadcast_p:
                smaller = d.inputs[0]
            else:
                continue
            trial = new[:i] + [smaller] + new[i + 1:]
            if np.broadcast_shapes(*[t.aval.shape for t in trial]) == out_shape:
                new = trial
        return new


def _is(u, value) -> bool:
    return u is not None and not isinstance(u, (np.bool_, bool)) and u == value


def _finite_nonzero(u) -> bool:
    return u is not None and bool(np.isfinite(u)) and u != 0


P = ufunc_prims
_SAME_ELEMENTS = {shape_ops.broadcast_p, shape_ops.reshape_p, shape_ops.transpose_p}


def _rule_multiply(r, x, y, out):
    ux, uy = r.uniform(x), r.uniform(y)
    if _is(uy, 1):
        return r.fit(x, out)
    if _is(ux, 1):
        return r.fit(y, out)
    for a, b in ((x, y), (y, x)):
        e = r.producer(b)
        if isinstance(a, Literal) and e is not None and e.prim is P["multiply"] \
                and r.single_use(b):                       # c * (d * y)  ->  (c*d) * y
            for d, z in (e.inputs, e.inputs[::-1]):
                if isinstance(d, Literal) and d.aval.dtype == a.aval.dtype:
                    return r.bind(P["multiply"], [_literal(a.value * d.value, a.aval.dtype), z])
        if e is not None and e.prim is P["multiply"] and r.single_use(b) and \
                a.aval.size < out.size:                    # (M * u) * v  ->  M * (u * v)
            for m, u in (e.inputs, e.inputs[::-1]):
                if m.aval == out and u.aval.size < out.size and u.aval.dtype == out.dtype \
                        and a.aval.dtype == out.dtype:
                    return r.bind(P["multiply"], [m, r.bind(P["multiply"], [u, a])])
        nb = r.negated(b)
        if nb is None:
            continue
        if isinstance(a, Literal):                         # c * -x  ->  (-c) * x
            return r.bind(P["multiply"], [_literal(-a.value, a.aval.dtype), nb])
        if r.single_use(b):                                # a * -x  ->  -(a * x)
            return r.bind(P["negative"], [r.bind(P["multiply"], [a, nb])])
    return None


def _rule_mul_zero_safe(r, t, f, out):
    ut, uf = r.uniform(t), r.uniform(f)
    if _is(ut, 0):
        return r.full(0, out)
    if _finite_nonzero(ut) or (uf is not None and bool(np.isfinite(uf))):
        return r.bind(P["multiply"], [t, f])
    return None


def _rule_add(r, x, y, out):
    if _is(r.uniform(y), 0):
        return r.fit(x, out)
    if _is(r.uniform(x), 0):
        return r.fit(y, out)
    ex, ey = r.producer(x), r.producer(y)
    if ex is not None and ey is not None and ex.prim is ey.prim is P["multiply"] and \
            r.single_use(x) and r.single_use(y):           # M*u + M*v  ->  M*(u+v)
        for m, u in (ex.inputs, ex.inputs[::-1]):
            if m.aval == out and u.aval.size < out.size and m in ey.inputs:
                v = ey.inputs[1] if ey.inputs[0] is m else ey.inputs[0]
                if v.aval.size < out.size and u.aval.dtype == v.aval.dtype == out.dtype:
                    return r.bind(P["multiply"], [m, r.bind(P["add"], [u, v])])
    nx, ny = r.negated(x), r.negated(y)
    if ny is not None:
        return r.bind(P["subtract"], [x, ny])
    if nx is not None:
        return r.bind(P["subtract"], [y, nx])
    return None


def _rule_subtract(r, x, y, out):
    if _is(r.uniform(y), 0):
        return r.fit(x, out)
    if _is(r.uniform(x), 0):
        return r.bind(P["negative"], [y]) if y.aval == out else None
    ny = r.negated(y)
    if ny is not None:
        return r.bind(P["add"], [x, ny])
    return None


def _rule_negative(r, x, out):
    inner = r.negated(x)
    if inner is not None:
        return inner
    e = r.producer(x)
    if e is not None and e.prim is P["multiply"] and r.single_use(x):
        a, b = e.inputs
        for c, y in ((a, b), (b, a)):                      # -(c * y)  ->  (-c) * y
            if isinstance(c, Literal) and c.aval.dtype.kind in "fc":
                return r.bind(P["multiply"], [_literal(-c.value, c.aval.dtype), y])
    return None


def _rule_contract(r, a, b, out, spec):
    """A contraction with an identity or a diagonal matrix (identity * vector)
    relabels the other operand (and scales it); a transposed operand is read through
    the spec."""
    a_idx, b_idx, out_idx = spec
    for diag, other, diag_idx, other_idx in ((a, b, a_idx, b_idx), (b, a, b_idx, a_idx)):
        scale = r.diagonal(diag) if len(diag_idx) == 2 else None
        if scale is None or other.aval.dtype != out.dtype:
            continue
        p, q = diag_idx
        for kept, summed in ((p, q), (q, p)):
            if summed in other_idx and summed not in out_idx and kept not in other_idx:
                relabeled = other_idx.replace(summed, kept)
                if sorted(relabeled) != sorted(out_idx):
                    continue
                perm = tuple(relabeled.index(i) for i in out_idx)
                moved = other if perm == tuple(range(len(perm))) else r.bind(
                    shape_ops.transpose_p, [other], perm=perm)
                if scale is True:
                    return moved
                along = tuple(-1 if i == kept else 1 for i in out_idx)
                along = tuple(scale.aval.size if d == -1 else d for d in along)
                column = scale if scale.aval.shape == along else r.bind(
                    shape_ops.reshape_p, [scale], shape=along)
                return r.bind(P["multiply"], [moved, column])
    operands, specs = [a, b], list(spec[:2])
    for k, x in enumerate(operands):
        e = r.producer(x)
        if e is not None and e.prim is shape_ops.transpose_p:
            perm = e.params["perm"]
            idx = [""] * len(perm)
            for i, p in enumerate(perm):
                idx[p] = specs[k][i]
            operands[k], specs[k] = e.inputs[0], "".join(idx)
    if operands[0] is a and operands[1] is b:
        return None
    return r.bind(contraction.contract_p, operands, spec=(specs[0], specs[1], spec[2]))


def _rule_true_divide(r, x, y, out):
    return r.fit(x, out) if _is(r.uniform(y), 1) else None


def _rule_power(r, x, y, out):
    return r.fit(x, out) if _is(r.uniform(y), 1) else None


def _rule_select(r, c, x, y, out):
    uc = r.uniform(c)
    if uc is not None:
        return r.fit(x if uc else y, out)
    if x is y:
        return r.fit(x, out)
    return None


def _rule_reshape(r, x, out, shape):
    if x.aval.shape == tuple(shape):
        return x
    e = r.producer(x)
    if e is not None and e.prim is shape_ops.reshape_p:
        return r.bind(shape_ops.reshape_p, [e.inputs[0]], shape=tuple(shape))
    u = r.uniform(x)
    return r.full(u, out) if u is not None and out.shape != () else None


def _rule_transpose(r, x, out, perm):
    if tuple(perm) == tuple(range(len(perm))):
        return x
    e = r.producer(x)
    if e is not None and e.prim is shape_ops.transpose_p:
        inner = e.params["perm"]
        composed = tuple(inner[p] for p in perm)
        if composed == tuple(range(len(composed))):
            return e.inputs[0]
        return r.bind(shape_ops.transpose_p, [e.inputs[0]], perm=composed)
    return None


def _rule_broadcast(r, x, out, shape):
    if x.aval.shape == tuple(shape):
        return x
    e = r.producer(x)
    if e is not None and e.prim is shape_ops.broadcast_p:
        return r.bind(shape_ops.broadcast_p, [e.inputs[0]], shape=tuple(shape))
    return None


def _rule_convert(r, x, out, dtype):
    return x if x.aval.dtype == out.dtype else None


def _rule_identity(r, x, out, **params):
    return x


def _rule_reduce_sum(r, x, out, axes):
    """sum of a broadcast over broadcast axes only: a multiplication by the count."""
    e = r.producer(x)
    u = r.uniform(x)
    if u is not None and not isinstance(u, (np.bool_, bool)):
        count = int(np.prod([x.aval.shape[a] for a in axes]))
        return r.full(np.asarray(u, out.dtype) * count, out)
    if e is None or e.prim is not shape_ops.broadcast_p:
        return None
    src = e.inputs[0]
    lead = x.aval.ndim - src.aval.ndim
    padded = (1,) * lead + src.aval.shape
    if any(padded[a] != 1 for a in axes) or src.aval.dtype != out.dtype:
        return None
    count = int(np.prod([x.aval.shape[a] for a in axes]))
    kept = tuple(d for i, d in enumerate(padded) if i not in axes)
    core = src if src.aval.shape == kept else r.bind(shape_ops.reshape_p, [src],
                                                      shape=kept)
    core = r.fit(core, out)
    return core if count == 1 else r.bind(P["multiply"], [core, _literal(count, out.dtype)])


RULES = {
    P["multiply"]: _rule_multiply,
    elementwise.mul_zero_safe: _rule_mul_zero_safe,
    P["add"]: _rule_add,
    P["subtract"]: _rule_subtract,
    P["negative"]: _rule_negative,
    P["true_divide"]: _rule_true_divide,
    P["power"]: _rule_power,
    elementwise.select: _rule_select,
    shape_ops.reshape_p: _rule_reshape,
    shape_ops.transpose_p: _rule_transpose,
    shape_ops.broadcast_p: _rule_broadcast,
    elementwise.convert: _rule_convert,
    elementwise.stop_gradient_p: _rule_identity,
    reductions.reduce_sum_p: _rule_reduce_sum,
    contraction.contract_p: _rule_contract,
}

# Elementwise primitives whose operands NumPy broadcasts itself.
BROADCASTING = set(ufunc_prims.values()) | {elementwise.select, elementwise.mul_zero_safe}


def rewrite(graph: Graph, rules=RULES):
    """One forward sweep of the algebraic rules (see the module docstring)."""
    r = Rewriter(graph)
    for e in graph.eqns:
        inputs = [r.read(a) for a in e.inputs]
        r.source = e.source
        rule = rules.get(e.prim)
        result = None
        if rule is not None and not e.prim.multiple_results:
            result = rule(r, *inputs, e.outputs[0].aval, **e.params)
        if result is not None:
            r.subst[e.outputs[0]] = result
            r.changed = True
            continue
        if e.prim in BROADCASTING:
            unbroadcast = r.unbroadcast(e, inputs)
            if any(a is not b for a, b in zip(unbroadcast, inputs)):
                inputs, r.changed = unbroadcast, True
        r.keep(e, inputs)
    return r.finish(), r.changed


# --------------------------------------------------------------------------- the strategy

simplify_strategy = sequence(repeat(sequence(fold_constants, rewrite, cse)), dce)


def rewrite_keeping_stop_gradient(graph: Graph):
    """rewrite, except that stop_gradient stays: the graph can be differentiated."""
    return rewrite(graph, KEEPING_STOP_GRADIENT)


KEEPING_STOP_GRADIENT = {p: r for p, r in RULES.items() if p is not elementwise.stop_gradient_p}
differentiable_strategy = sequence(
    repeat(sequence(fold_constants, rewrite_keeping_stop_gradient, cse)), dce)


def simplify(graph: Graph, differentiable=False) -> Graph:
    """The simplified graph (same values); see the module docstring for the order. With
    `differentiable`, stop_gradient is kept, so that the result has the same derivatives
    too (each other rewrite is an identity that holds for every value)."""
    return (differentiable_strategy if differentiable else simplify_strategy)(graph)[0]
