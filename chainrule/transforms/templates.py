"""Derivative rules traced once per primitive signature (for the tape, `tape.py`).

Applied to one operation as a function runs, reverse mode dispatches each NumPy call of
the JVP rule onto a linear trace, then interprets the recorded linear graph backwards:
most of the time of small eager gradients. What that computes for one primitive depends,
though, only on the operation's *signature*: the types, shapes and dtypes of its
inputs, its parameters, and which inputs carry tangents. So the second time a signature
is met, the rule is linearized and transposed *abstractly*, once, into a small graph (a
`Template`) from (primal inputs, outputs, output cotangents) to input cotangents,
simplified and kept; every later operation with that signature runs the template.

The derivatives still come from the JVP and transpose rules, traced once per signature
instead of once per call. Signatures whose parameters are sub-graphs or functions (a new
signature at every call), and rules that cannot be traced without values, keep the rule.
Changing any rule table drops the templates made from it. (Forward mode keeps applying
the rules: measured, a template there saved nothing, as its linear operations are
recorded one by one either way.)
"""
from __future__ import annotations

import sys

import numpy as np

from ..core.batch_axes import move_batch_axis
from ..core.ir import Literal, aval_of
from ..core.primitive import DiagonalBatch, RuleTable, impl_rules
from ..core.trace import Tracer, trace_flat
from .basis import apply_structured
from .batching import batch_eval, batch_graph
from .simplify import simplify


class Template:
    """A graph run as a register program: arguments, then constants, then each
    equation's outputs, in order. A register is dropped after its last use, and a ufunc
    whose operand will not be read again writes its result into that operand's array:
    always when the program made the array itself, and, for an argument, when the
    array owns its memory and nothing outside the program holds it (`_extra_refs`), such
    as a cotangent passed on by the tape or a value the tape saved for this operation
    alone. Fewer large arrays are then alive at once, and fewer fresh pages are touched.
    Its arguments are the primal inputs and outputs it reads (`reads` masks which: only
    those are kept alive) and then the output cotangents, given as a list the program
    takes over; `live[i]` says whether the primitive's i-th output has a tangent at
    all (not a symbolic zero)."""
    __slots__ = ("graph", "reads", "read_at", "live", "consts", "program", "outputs",
                 "batched_programs")

    def __init__(self, graph, reads, live):
        self.graph, self.reads, self.live = graph, reads, live
        self.read_at = tuple(i for i, r in enumerate(reads) if r)
        self.batched_programs: dict = {}
        literals = [a for e in graph.eqns for a in e.inputs if type(a) is Literal] + \
            [a for a in graph.outvars if type(a) is Literal]
        self.consts = list(graph.consts) + [a.value for a in literals]
        slot = {a: i for i, a in enumerate(graph.invars + graph.constvars + literals)}
        for e in graph.eqns:
            for v in e.outputs:
                slot[v] = len(slot)
        last_use = {slot[a]: i for i, e in enumerate(graph.eqns) for a in e.inputs}
        for a in graph.outvars:
            last_use.pop(slot[a], None)
        dead = [[] for _ in graph.eqns]
        for reg, i in last_use.items():
            dead[i].append(reg)
        made = set()        # registers holding ufunc results: arrays the program owns
        n_args = len(graph.invars)
        self.program = []
        for i, e in enumerate(graph.eqns):
            impl = impl_rules[e.prim]
            ins = [slot[a] for a in e.inputs]
            into, donors = None, ()     # operands the result may overwrite (positions)
            if isinstance(impl, np.ufunc) and impl.nout == 1 and e.outputs[0].aval.ndim:
                fits = [k for k, (a, r) in enumerate(zip(e.inputs, ins))
                        if r in dead[i] and a.aval == e.outputs[0].aval]
                into = next((k for k in fits if ins[k] in made), None)
                out = e.outputs[0].aval
                if out.size * out.dtype.itemsize >= DONATE_MIN_BYTES:
                    donors = tuple(k for k in fits if ins[k] < n_args)
                made.add(slot[e.outputs[0]])
            self.program.append((e.prim, impl, ins, e.params, dead[i], into, donors))
        self.outputs = [slot[a] for a in graph.outvars]

    def __call__(self, args, traced=False):
        """Runs the program: on arrays directly; by binding when values may be traced
        (then each primitive records in the innermost trace among its inputs)."""
        regs = args
        regs += self.consts
        for prim, impl, ins, params, dead, into, donors in self.program:
            operands = [regs[i] for i in ins]
            for i in dead:
                regs[i] = None
            if traced:
                out = prim.bind(*operands, **params)
            elif into is not None:
                out = impl(*operands, out=operands[into])
            else:
                target = next((operands[k] for k in donors if _extra_refs(
                    operands[k], operands) == _NO_EXTRA_REFS and _owned(operands[k])),
                    None) if donors else None
                out = impl(*operands, **params) if target is None else \
                    impl(*operands, out=target)
                del target
            del operands
            if prim.multiple_results:
                regs.extend(out)
            else:
                regs.append(out)
        return [regs[i] for i in self.outputs]

    def batched(self, args, dims, size):
        """The program on batched arguments (batch axes `dims`, None: unbatched): outputs
        with the batch axis first, or a DiagonalBatch. Dense batches run a batched
        program made once per (dims, size) by vmap; a structured one (the identity basis
        of a Jacobian) goes through vmap's interpreter, which keeps its structure."""
        if not any(type(a) is DiagonalBatch for a in args):
            key = (tuple(dims), size)
            program = self.batched_programs.get(key)
            if program is None:
                graph, _ = batch_graph(self.graph, list(dims), size)
                program = self.batched_programs[key] = Template(graph, (), ())
            return program(args, traced=any(isinstance(a, Tracer) for a in args))
        outs, out_dims = batch_eval(self.graph, self.graph.consts, args, dims, size,
                                    apply=apply_structured)
        return [o if type(o) is DiagonalBatch else move_batch_axis(o, d, 0, size)
                for o, d in zip(outs, out_dims)]


DONATE_MIN_BYTES = 256 * 1024   # smaller arguments are not worth counting references
                                # (NumPy elides temporaries from the same size on)


def _extra_refs(a, operands) -> int:
    """The references to `a` beyond its entries in the operand list. The program clears
    its dead registers (in the argument list it took over, too), so when this equals
    `_NO_EXTRA_REFS` nothing outside the running equation holds `a`: overwriting it is
    then invisible, as in NumPy's own elision of temporaries (weak references aside:
    they are not counted)."""
    return sys.getrefcount(a) - sum(o is a for o in operands)


_probe = [np.empty(1)]      # an array that only one list holds, passed as above
_NO_EXTRA_REFS = _extra_refs(_probe[0], _probe)     # (this call's own references)
del _probe


def _owned(a) -> bool:
    """A writeable array owning its memory: views keep their base alive, so an array
    something views never passes the count above."""
    return type(a) is np.ndarray and a.base is None and a.flags.writeable


def build(fn, in_avals, n_values, live):
    """The Template of fn (a function of abstract values), or None when fn cannot be
    traced without values. The first n_values arguments are primal inputs and outputs,
    kept only if read."""
    try:
        graph, _, _ = trace_flat(fn, list(in_avals), abstract=True)
    except Exception:       # a value-dependent rule: the caller runs it on values
        return None
    graph = simplify(graph, differentiable=True)     # templates run inside other transforms
    used = {a for e in graph.eqns for a in e.inputs} | set(graph.outvars)
    reads = tuple(v in used for v in graph.invars[:n_values])
    graph.invars = [v for v, r in zip(graph.invars, reads) if r] + graph.invars[n_values:]
    return Template(graph, reads, tuple(live))


def _plain(value) -> bool:
    """A parameter value that identifies a signature by value (not by identity)."""
    if isinstance(value, tuple):
        return all(_plain(v) for v in value)
    return type(value).__hash__ not in (None, object.__hash__)


_templates: dict = {}
_seen_once: dict = {}           # signatures met once, not yet given a template
_templates_version = [RuleTable.version]     # the rules the cached templates come from
TEMPLATE_AT_SECOND_SIGHT = True     # False: a template at once (the tests take every route)
TEMPLATE_CACHE_SIZE = 4096


def signature(maker, prim, params, primals, tangents) -> tuple:
    """The key of an operation's template: the maker, the primitive, its parameters,
    then type, shape, dtype and whether it has no tangent, for each operand (flat: the
    cheapest tuple to build and hash, on the path of every recorded operation)."""
    key = [maker, prim, *params.items()]
    for p, t in zip(primals, tangents):
        key += (type(p), p.shape, p.dtype, t is None)
    return tuple(key)


def template_for(maker, prim, primals, params, tangents, outs):
    """The cached Template that `maker(prim, in_avals, params, with_tangent)` makes for
    this operation's signature, or None: the caller applies the rule itself. A template
    is made the second time a signature is met, so that code whose shapes change at
    every step (growing arrays) does not pay for templates it never reuses; and only if
    the primitive's shape rule agrees with the outputs it computed (a template is
    traced with shapes only)."""
    if _templates_version[0] != RuleTable.version:
        _templates.clear()
        _seen_once.clear()
        _templates_version[0] = RuleTable.version
    try:
        key = signature(maker, prim, params, primals, tangents)
        return _templates[key]
    except KeyError:
        pass
    except (AttributeError, TypeError):     # a Python scalar operand; unhashable params
        return None
    if not all(_plain(v) for v in params.values()):
        return None     # sub-graphs or functions: a new signature at every call
    if TEMPLATE_AT_SECOND_SIGHT and _seen_once.pop(key, None) is None:
        if len(_seen_once) >= TEMPLATE_CACHE_SIZE:
            _seen_once.clear()
        _seen_once[key] = True
        return None
    if len(_templates) >= TEMPLATE_CACHE_SIZE:
        _templates.clear()
    in_avals = tuple(aval_of(p) for p in primals)
    try:
        consistent = prim.shape(*in_avals, **params) == [aval_of(o) for o in outs]
    except Exception:
        consistent = False
    template = _templates[key] = maker(prim, in_avals, params, tuple(
        t is not None for t in tangents)) if consistent else None
    return template
