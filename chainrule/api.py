"""The user-facing transformations: grad, value_and_grad, jvp, vjp, linearize, jacfwd,
jacrev, jacobian, hessian, make_graph, stop_gradient.

Every transformation runs the function on tracers carrying concrete values (so Python
control flow works). Forward mode applies each primitive's JVP rule as it goes (with
the tangents traced, that records the linear graph: `linearize`, `jacfwd`); reverse mode
records a tape of per-signature VJP templates and runs them backwards (`grad`, `vjp`,
`jacrev`), or, under `jit`, transposes the linear graph. Nested transformations trace
into each other, so any composition and any order works.
"""
from __future__ import annotations

import functools
import inspect

import numpy as np

from . import ops  # noqa: F401  (registers every primitive)
from .core.errors import NonDifferentiableError, ShapeError
from .core.ir import Literal, aval_of
from .core.pytree import tree_flatten, tree_map, tree_unflatten
from .core.trace import Tracer, concrete as _concrete, open_traces, trace_flat
from .core.trace import eval_graph
from .ops.elementwise import stop_gradient_p
from .core.primitive import Zero
from .transforms.basis import apply_structured, identity_basis
from .transforms.batching import vmap_graph_eval
from .transforms.jvp import instantiate, jvp_flat, linearize_flat
from .transforms.simplify import dce
from .transforms.tape import LinearGraphVJP, tape_flat
from .transforms.transpose import backward_pass


# --------------------------------------------------------------------------- tracing a function

def _as_leaf(x):
    if isinstance(x, (Tracer, np.ndarray)):
        return x
    if isinstance(x, (bool, int, float, complex, np.generic, list)):
        return np.asarray(x)
    raise TypeError(f"arguments to transform must be arrays, scalars or pytrees of them; "
                    f"got {type(x).__name__}")


def _is_float(x) -> bool:
    if type(x) is np.ndarray:
        return x.dtype.kind in "fc"
    return aval_of(x).is_float


class _Flattened:
    """A function of pytrees seen as a function of flat leaves: the differentiated
    arguments (args[argnums]) are the leaves; the output's structure and any auxiliary
    output are recorded when it runs."""

    def __init__(self, fun, args, argnums, has_aux):
        self.fun, self.args, self.argnums, self.has_aux = fun, list(args), argnums, has_aux
        leaves, self.in_tree = tree_flatten(tuple(self.args[i] for i in argnums))
        self.leaves = [_as_leaf(x) for x in leaves]
        self.aux = None

    def flat_fun(self, *tracers):
        full = list(self.args)
        for i, a in zip(self.argnums, tree_unflatten(self.in_tree, tracers)):
            full[i] = a
        out = self.fun(*full)
        if self.has_aux:
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TypeError("with has_aux=True the function must return a pair "
                                "(output, auxiliary data)")
            out, aux = out
            self.aux = tree_map(_concrete_or_self, aux)
        out_leaves, self.out_tree = tree_flatten(out)
        return out_leaves

    def output(self):
        return tree_unflatten(self.out_tree, self.outs)


class _Traced(_Flattened):
    """A function traced at given arguments: its graph and the values of all its Vars."""

    def __init__(self, fun, args, argnums, has_aux=False, hints=None):
        super().__init__(fun, args, argnums, has_aux)
        self.graph, trace, _ = trace_flat(self.flat_fun, self.leaves, hints=hints)
        self.values = trace.values
        self.outs = [a.value if isinstance(a, Literal) else self.values[a]
                     for a in self.graph.outvars]


class _Linearized(_Flattened):
    """A function run once with its tangents traced: its outputs and the linear graph
    from input tangents to output tangents (only residuals are kept alive)."""

    def __init__(self, fun, args, argnums, has_aux=False):
        super().__init__(fun, args, argnums, has_aux)
        self.outs, self.lin = linearize_flat(self.flat_fun, self.leaves,
                                             [_is_float(x) for x in self.leaves])

    def linearize(self):
        return self.lin

    def pull(self, ct_leaves, batch=None, last=False):
        """Cotangents of the leaves (Zero or None where nothing flows back) from those of
        the outputs (None: zero). With `batch=n`, of a batch of n cotangents along a
        leading axis (or a DiagonalBatch): the backward pass is traced once and run by
        vmap's interpreter. `last` (no pull follows) matters to the tape, which then
        frees what it saved as it goes; a linear graph has nothing to free early."""
        if batch is not None:
            given = [c for c in ct_leaves if c is not None]
            cts = iter(LinearGraphVJP(self.lin, [c is not None for c in ct_leaves]).batched(
                given, [0] * len(given), batch))
            return [next(cts) if _is_float(x) else None for x in self.leaves]
        ct_leaves = [Zero(aval_of(o)) if c is None else c for c, o in zip(ct_leaves, self.outs)]
        cts = iter(backward_pass(self.lin, ct_leaves))
        return [next(cts) if _is_float(x) else None for x in self.leaves]


class _Taped(_Flattened):
    """A function run once, recording a tape of per-operation VJPs (reverse mode
    outside jit: see transforms/tape.py); `pull` has _Linearized.pull's signature."""

    def __init__(self, fun, args, argnums, has_aux=False):
        super().__init__(fun, args, argnums, has_aux)
        self.outs, self.pull = tape_flat(self.flat_fun, self.leaves,
                                         [_is_float(x) for x in self.leaves])


def _reverse(fun, args, argnums, has_aux):
    """The function run for reverse mode: on a tape, unless a transformation running
    records source lines (jit: its generated code names the line each derivative
    comes from, which the linearized graph keeps)."""
    taped = not any(t.record_source for t in open_traces())
    return (_Taped if taped else _Linearized)(fun, args, argnums, has_aux)


def _concrete_or_self(x):
    """Auxiliary outputs leave the trace as their values (not differentiated)."""
    return x._value if isinstance(x, Tracer) and x._value is not None else x


def _argnums_tuple(argnums, nargs):
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for n in nums:
        if not -nargs <= n < nargs:
            raise ValueError(f"argnums {argnums} out of range for {nargs} positional "
                             f"argument(s)")
    return tuple(n % nargs for n in nums)


def _check_differentiable(traced, what):
    for leaf in traced.leaves:
        if not _is_float(leaf):
            raise NonDifferentiableError(
                f"{what} with respect to an input of dtype {aval_of(leaf).dtype}: "
                f"derivatives are taken with respect to floating-point arrays. Pass "
                f"floats (e.g. x.astype(float) or 3.0 instead of 3), or move the integer "
                f"argument out of argnums.")


def _instantiate_like(ct, leaf):
    """A cotangent as an array: zeros shaped like the leaf for None or Zero (float
    zeros for an integer leaf)."""
    if ct is None:
        return np.zeros(np.shape(leaf), aval_of(leaf).dtype if _is_float(leaf) else float)
    return instantiate(ct)


def _pullback(traced):
    def pullback(ct):
        ct_leaves, ct_tree = tree_flatten(ct)
        if ct_tree != traced.out_tree:
            raise ShapeError(f"the cotangent's structure {ct_tree} differs from the "
                             f"output's {traced.out_tree}")
        for c, o in zip(ct_leaves, traced.outs):
            if np.shape(c) != np.shape(o):
                raise ShapeError(f"cotangent of shape {np.shape(c)} for an output of "
                                 f"shape {np.shape(o)}")
        ct_leaves = [c if isinstance(c, Tracer) else np.asarray(c, aval_of(o).dtype)
                     for c, o in zip(ct_leaves, traced.outs)]
        flat = [_instantiate_like(c, x) for c, x in zip(traced.pull(ct_leaves), traced.leaves)]
        return tree_unflatten(traced.in_tree, flat)
    return pullback


# --------------------------------------------------------------------------- reverse mode

def vjp(fun, *primals, has_aux=False):
    """(fun(*primals), pullback) where pullback(cotangent) returns one cotangent per
    primal, each shaped like it. With has_aux, also returns fun's auxiliary output."""
    traced = _reverse(fun, primals, range(len(primals)), has_aux)
    pullback = _pullback(traced)
    return (traced.output(), pullback, traced.aux) if has_aux else \
        (traced.output(), pullback)


def value_and_grad(fun, argnums=0, has_aux=False):
    """Returns a function giving (fun(*args), gradient of fun wrt args[argnums]).
    fun must return a float scalar (with has_aux: a pair (scalar, aux))."""
    @functools.wraps(fun)
    def value_and_grad_fun(*args, **kwargs):
        nums = _argnums_tuple(argnums, len(args))
        traced = _reverse(lambda *a: fun(*a, **kwargs), args, nums, has_aux)
        _check_differentiable(traced, "grad")
        if len(traced.outs) != 1 or np.shape(traced.outs[0]) != ():
            shapes = [np.shape(o) for o in traced.outs]
            raise ShapeError(
                f"grad needs a function with a scalar output, got output shape(s) "
                f"{shapes}; use jacrev/jacobian for non-scalar outputs, vjp for a "
                f"cotangent of your choice, or reduce the output (e.g. np.sum)")
        out = traced.outs[0]
        if not _is_float(out):
            raise NonDifferentiableError(
                f"grad needs a floating-point output, got dtype {aval_of(out).dtype}")
        cts = traced.pull([np.ones((), aval_of(out).dtype)], last=True)
        grads = tree_unflatten(traced.in_tree, [_instantiate_like(c, x)
                                                for c, x in zip(cts, traced.leaves)])
        grads = grads[0] if isinstance(argnums, int) else grads
        value = traced.output()
        return ((value, traced.aux), grads) if has_aux else (value, grads)
    return value_and_grad_fun


def grad(fun, argnums=0, has_aux=False):
    """The gradient of a scalar function with respect to args[argnums], in the same
    pytree structure as those arguments."""
    vg = value_and_grad(fun, argnums, has_aux)

    @functools.wraps(fun)
    def grad_fun(*args, **kwargs):
        (value, g) = vg(*args, **kwargs)
        return (g, value[1]) if has_aux else g
    return grad_fun


# --------------------------------------------------------------------------- forward mode

def _check_tangents(primals, tangents):
    p_leaves, p_tree = tree_flatten(tuple(primals))
    t_leaves, t_tree = tree_flatten(tuple(tangents))
    if p_tree != t_tree:
        raise ShapeError(f"tangents have structure {t_tree}, primals {p_tree}")
    for p, t in zip(p_leaves, t_leaves):
        if np.shape(p) != np.shape(t):
            raise ShapeError(f"tangent of shape {np.shape(t)} for a primal of shape "
                             f"{np.shape(p)}")
    return [_as_leaf(t) for t in t_leaves]


def jvp(fun, primals, tangents, has_aux=False):
    """(fun(*primals), directional derivative of fun at primals along tangents)."""
    primals, tangents = tuple(primals), tuple(tangents)
    t_leaves = _check_tangents(primals, tangents)
    flat = _Flattened(fun, primals, range(len(primals)), has_aux)
    t_leaves = [t if _is_float(p) else None for p, t in zip(flat.leaves, t_leaves)]
    flat.outs, outs_t = jvp_flat(flat.flat_fun, flat.leaves, t_leaves)
    outs_t = [np.zeros(np.shape(o), aval_of(o).dtype) if t is None else t
              for o, t in zip(flat.outs, outs_t)]
    result = (flat.output(), tree_unflatten(flat.out_tree, outs_t))
    return result + (flat.aux,) if has_aux else result


def linearize(fun, *primals):
    """(fun(*primals), f_lin) where f_lin(*tangents) is the JVP at primals, from a
    linear graph computed once (printable: f_lin.graph)."""
    traced = _Linearized(fun, primals, range(len(primals)))
    lin = traced.linearize()
    float_mask = [_is_float(x) for x in traced.leaves]

    def f_lin(*tangents):
        t_leaves = _check_tangents(primals, tangents)
        outs = eval_graph(lin, lin.consts, [t for t, f in zip(t_leaves, float_mask) if f])
        return tree_unflatten(traced.out_tree, outs)
    f_lin.graph = lin
    return traced.output(), f_lin


# --------------------------------------------------------------------------- Jacobians

def _filled(x, value):
    """A plain array shaped like x (which may be traced) holding value: tangent and
    cotangent seeds are constants, whatever transformation x belongs to."""
    aval = aval_of(x)
    return np.full(aval.shape, value, aval.dtype)


def _forward_blocks(lin, ins, outs):
    """blocks[i][j] = d out_i / d in_j: per input, one batched evaluation of the linear
    graph on all the basis vectors at once (vmap's interpreter); a one-element input
    needs a single plain evaluation."""
    blocks = [[None] * len(ins) for _ in outs]
    lin, _ = dce(lin)         # tangents of values the Jacobian drops are not computed
    for j, xj in enumerate(ins):
        n = int(np.size(xj))
        if n == 1:
            columns = eval_graph(lin, lin.consts, [_filled(x, 1.0 if k == j else 0.0)
                                                   for k, x in enumerate(ins)])
        else:
            args = [identity_basis(x) if k == j else _filled(x, 0.0) for k, x in enumerate(ins)]
            dims = [0 if k == j else None for k in range(len(ins))]
            columns = [np.moveaxis(c, 0, -1) for c in vmap_graph_eval(
                lin, lin.consts, args, dims, n, apply=apply_structured)]
        for i, o in enumerate(outs):
            blocks[i][j] = np.reshape(columns[i], np.shape(o) + np.shape(xj))
    return blocks


def _reverse_blocks(traced, ins, outs):
    """blocks[i][j] = d out_i / d in_j: per output, one backward pass on all the basis
    cotangents at once (batched); a one-element output (a gradient) needs a single
    plain backward pass."""
    blocks = []
    for i, oi in enumerate(outs):
        n = int(np.size(oi))
        seed = _filled(oi, 1.0) if n == 1 else identity_basis(oi)
        cts = traced.pull([seed if k == i else None for k in range(len(outs))],
                          batch=None if n == 1 else n)
        rows = [_instantiate_like(c, x) if n == 1 else
                np.zeros((n,) + np.shape(x), aval_of(x).dtype) if c is None else c
                for c, x in zip(cts, ins)]
        blocks.append([np.reshape(r, np.shape(oi) + np.shape(x)) for r, x in zip(rows, ins)])
    return blocks


def _input_signature(args, nums):
    leaves, tree = tree_flatten(tuple(args[i] for i in nums))
    return tree, tuple((np.shape(x), aval_of(x).dtype) for x in leaves)


def _jac_transform(fun, argnums, direction):
    """direction: "fwd", "rev", "auto" (forward when there are fewer inputs than
    outputs, else reverse), or "rev_unless_wide" (the same choice, for the Hessian).
    Which one is wide shows only after a run, so each signature of the inputs remembers
    it: the first "auto" call linearizes (a linear graph serves both ways) and later
    ones go the chosen way at once, backwards on a tape; "rev_unless_wide" starts on a
    tape and linearizes again when that was the wrong guess."""
    wide_at: dict = {}      # input signature -> whether the Jacobian there was wide

    @functools.wraps(fun)
    def jac_fun(*args, **kwargs):
        nums = _argnums_tuple(argnums, len(args))
        call = lambda *a: fun(*a, **kwargs)
        choosing = direction in ("auto", "rev_unless_wide")
        key = _input_signature(args, nums) if choosing else None
        known = wide_at.get(key)
        linearize = direction == "fwd" or choosing and known or \
            direction == "auto" and known is None
        traced = (_Linearized if linearize else _reverse)(call, args, nums, False)
        _check_differentiable(traced, "a Jacobian")
        for o in traced.outs:
            if not _is_float(o):
                raise NonDifferentiableError(
                    f"a Jacobian of an output of dtype {aval_of(o).dtype}")
        wide = sum(np.size(x) for x in traced.leaves) < sum(np.size(o) for o in traced.outs)
        if choosing:
            if len(wide_at) >= 256:
                wide_at.clear()
            wide_at[key] = wide
            if wide and not isinstance(traced, _Linearized):
                traced = _Linearized(call, args, nums)
        forward = direction == "fwd" or choosing and wide
        blocks = _forward_blocks(traced.linearize(), traced.leaves, traced.outs) if forward \
            else _reverse_blocks(traced, traced.leaves, traced.outs)
        rows = [tree_unflatten(traced.in_tree, row) for row in blocks]
        rows = [r[0] for r in rows] if isinstance(argnums, int) else rows
        return tree_unflatten(traced.out_tree, rows)
    return jac_fun


def jacfwd(fun, argnums=0):
    """The Jacobian by forward mode: one JVP per input element."""
    return _jac_transform(fun, argnums, "fwd")


def jacrev(fun, argnums=0):
    """The Jacobian by reverse mode: one VJP per output element."""
    return _jac_transform(fun, argnums, "rev")


def jacobian(fun, argnums=0, mode="auto", order=None):
    """The Jacobian, shaped out.shape + in.shape. mode: "fwd", "rev", "auto" (forward
    when there are fewer inputs than outputs, else reverse: on the structured basis a
    square Jacobian is cheaper backwards, the dense part comes last; learnt at the first
    call for each shape of the inputs) or "cross_country" (vertex elimination in
    `order`, searched when None; see chainrule.elimination)."""
    if mode in ("fwd", "rev", "auto"):
        return _jac_transform(fun, argnums, mode)
    if mode == "cross_country":
        from .elimination import jacobian_function
        return jacobian_function(fun, argnums, order)
    raise ValueError(f"jacobian mode must be 'auto', 'fwd', 'rev' or 'cross_country', "
                     f"got {mode!r}")


def hessian(fun, argnums=0):
    """The Hessian. Of a scalar function (the usual case): reverse over reverse, both on
    tapes, the gradient's Jacobian in one batched backward pass. Of a vector-valued one:
    forward over reverse, jacfwd(jacrev(fun)) (found out by a first run that is then
    repeated, at the first call for each shape of the inputs)."""
    return _jac_transform(jacrev(fun, argnums), argnums, "rev_unless_wide")


# --------------------------------------------------------------------------- graphs and values

def make_graph(fun, static_argnums=()):
    """Returns a function that traces fun at given arguments and returns its Graph
    (print it to read the equations)."""
    try:
        names = list(inspect.signature(fun).parameters)
    except (TypeError, ValueError):
        names = []

    @functools.wraps(fun)
    def graph_of(*args):
        nums = [i for i in range(len(args)) if i not in static_argnums]
        hints = []
        for i in nums:
            n = tree_flatten(args[i])[1].num_leaves
            base = names[i] if i < len(names) else f"arg{i}"
            hints += [base] if n == 1 else [f"{base}_{k}" for k in range(n)]
        return _Traced(fun, args, nums, hints=hints).graph
    return graph_of


def stop_gradient(x):
    """x, with derivatives stopped: every tangent and cotangent through it is zero."""
    return tree_map(lambda leaf: stop_gradient_p.bind(leaf), x)


def concrete(x):
    """The plain NumPy value of a traced array, detached on purpose (for logging)."""
    return tree_map(lambda leaf: _concrete(leaf) if isinstance(leaf, Tracer) else leaf, x)
