"""Eager reverse mode on a tape of per-signature VJP templates (transforms/tape.py):
the same cotangents as linearize + transpose, for every route a call can take."""
import numpy as np
import pytest

import chainrule as cr
from chainrule.core.primitive import RuleTable, transpose_rules
from chainrule.ops.elementwise import prims
from chainrule.transforms import tape, templates
from chainrule.transforms.jvp import linearize_flat
from chainrule.transforms.transpose import backward_pass

rng = np.random.default_rng(3)


def _linearized_vjp(f, args, ct):
    """The reference: linearize, then transpose the linear graph."""
    outs, lin = linearize_flat(lambda *a: [f(*a)], list(args), [True] * len(args))
    return [np.asarray(c) for c in backward_pass(lin, [ct])]


FUNCTIONS = [
    (lambda x, W: np.sum(np.tanh(W @ x) ** 2) + np.log1p(np.exp(x)).mean(),
     [rng.standard_normal(4), rng.standard_normal((3, 4))]),
    (lambda x, y: np.maximum(x, y) * np.where(x > 0, np.sqrt(np.abs(x)), 0.0) / (1 + y * y),
     [rng.standard_normal((2, 3)), rng.standard_normal(3)]),
    (lambda x, y: np.linalg.solve(x @ x.T + 3 * np.eye(3), y).sum(0),
     [rng.standard_normal((3, 3)), rng.standard_normal((3, 2))]),
    (lambda x, y: np.concatenate([x[1:], y[::2]]) ** 3 - np.cumsum(x) [0],
     [rng.standard_normal(5), rng.standard_normal(6)]),
    (lambda x, y: np.linalg.eigh(x + x.T)[0] * y + np.sort(y) ** 2.5,
     [rng.standard_normal((3, 3)), rng.uniform(1, 2, 3)]),
]


@pytest.mark.parametrize("f, args", FUNCTIONS)
def test_tape_equals_linearize_then_transpose(f, args):
    y = f(*args)
    ct = rng.standard_normal(np.shape(y))
    _, pullback = cr.vjp(f, *args)
    for got, want in zip(pullback(ct), _linearized_vjp(f, args, ct)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def _vjp_templates(prim):
    return [t for k, t in templates._templates.items()
            if k[0] is tape.vjp_template and k[1] is prim]


def test_a_template_is_made_at_the_second_call_of_a_signature_and_kept(monkeypatch):
    monkeypatch.setattr(templates, "TEMPLATE_AT_SECOND_SIGHT", True)
    templates._templates.clear()
    templates._seen_once.clear()
    grad = cr.grad(lambda x: np.sum(np.sin(x)))
    sin_templates = lambda: _vjp_templates(prims["sin"])
    x = rng.standard_normal(5)
    grad(x)
    assert not sin_templates()                          # met once: the general route
    for _ in range(3):
        np.testing.assert_allclose(grad(x), np.cos(x), rtol=1e-14)
    assert len(sin_templates()) == 1
    assert sin_templates()[0].reads == (True, False)    # x, not sin(x)
    grad(rng.standard_normal(6))                        # another shape, once
    assert len(sin_templates()) == 1


def test_changing_a_rule_drops_the_templates_made_from_it():
    neg = prims["negative"]
    f = lambda x: np.sum(-x)
    x = rng.standard_normal(3)
    np.testing.assert_allclose(cr.grad(f)(x), -np.ones(3))
    saved = transpose_rules[neg]
    transpose_rules[neg] = lambda cts, x: [cts[0]]         # deliberately wrong
    try:
        np.testing.assert_allclose(cr.grad(f)(x), np.ones(3))
    finally:
        transpose_rules[neg] = saved
    np.testing.assert_allclose(cr.grad(f)(x), -np.ones(3))
    before = RuleTable.version          # every way of changing a table counts
    transpose_rules.setdefault(neg, saved)
    rules = transpose_rules
    rules |= {}
    assert RuleTable.version == before + 2


def test_control_flow_and_custom_rules_take_the_general_route():
    @cr.custom_vjp
    def clipped(x):
        return np.clip(x, -1, 1)
    clipped.defvjp(lambda x: (clipped(x), None), lambda res, g: (g * 0.5,))

    def f(x):
        y = cr.cond(x[0] > 0, lambda v: v * 2, lambda v: v * 3, x)
        return np.sum(clipped(y) + cr.fori_loop(0, 3, lambda i, c: c * x, x))
    x = np.array([0.5, -0.2])
    want = 0.5 * 2 + 4 * x ** 3
    np.testing.assert_allclose(cr.grad(f)(x), want, rtol=1e-12)


def test_pullback_of_a_tape_can_be_differentiated():
    """vjp called on arrays records a tape; its pullback, called on tracers, records."""
    x = rng.standard_normal(4)
    _, pullback = cr.vjp(lambda x: np.sin(x) * x, x)
    ct = rng.standard_normal(4)
    # d/dct <pullback(ct), v> = J v
    v = rng.standard_normal(4)
    got = cr.grad(lambda c: np.sum(pullback(c)[0] * v))(ct)
    np.testing.assert_allclose(got, (np.cos(x) * x + np.sin(x)) * v, rtol=1e-12)
    # and the second derivative through grad of a taped grad
    h = cr.grad(lambda x: np.sum(cr.grad(lambda z: np.sum(z ** 3))(x)))(x)
    np.testing.assert_allclose(h, 6 * x, rtol=1e-12)


def test_python_scalar_operands_and_integer_outputs():
    from chainrule.ops.elementwise import prims as p
    f = lambda x: np.sum(p["multiply"].bind(x, 2.5) * (np.argmax(x) + 1))
    x = np.array([0.3, 2.0, -1.0])
    np.testing.assert_allclose(cr.grad(f)(x), [5.0, 5.0, 5.0])


def test_grad_inside_eager_forward_mode_runs_on_a_tape_of_traced_values():
    """jacfwd(grad(f)) and jvp(grad(f)): the inner grad records a tape whose saved values
    are forward-mode tracers, and its templates run by binding on them."""
    from chainrule.transforms.jvp import JVPTracer
    templates._templates.clear()
    f = lambda x: np.sum(np.sin(x) * x ** 3)
    x = rng.standard_normal(4)
    cr.jacfwd(cr.grad(f))(x)
    H = cr.jacfwd(cr.grad(f))(x)
    want = np.diag(-np.sin(x) * x ** 3 + 6 * np.cos(x) * x ** 2 + 6 * x * np.sin(x))
    np.testing.assert_allclose(H, want, rtol=1e-12, atol=1e-12)
    traced_x = JVPTracer(None, x, None)
    assert templates.signature(tape.vjp_template, prims["sin"], {}, [traced_x], [1]) \
        in templates._templates
    v = rng.standard_normal(4)
    np.testing.assert_allclose(cr.jvp(cr.grad(f), (x,), (v,))[1], want @ v, rtol=1e-12)


def test_grad_under_jit_keeps_the_linearized_graph():
    templates._templates.clear()
    templates._seen_once.clear()
    for _ in range(2):
        g = cr.jit(cr.grad(lambda x: np.sum(np.cos(x) ** 3)))
        x = rng.standard_normal(3)
        np.testing.assert_allclose(g(x), -3 * np.cos(x) ** 2 * np.sin(x), rtol=1e-12)
    assert not [k for k in templates._templates if k[0] is tape.vjp_template]


def _sin_with_jvp(jvp_factor):
    from chainrule.core.primitive import primitive
    p = primitive("test_sin_" + str(id(jvp_factor)), np.sin, lambda a: a,
                  jvp=lambda primals, tangents, outs: [tangents[0] * jvp_factor(primals[0])])
    return p


def test_templates_keep_stop_gradient_so_the_tape_differentiates_like_the_rules():
    """A rule whose own derivative goes through stop_gradient: the second derivative
    through nested tapes is what the rules say (-sin x + 0.1), not what dropping
    stop_gradient from the template would give (-sin x)."""
    p = _sin_with_jvp(lambda x: np.cos(x) + 0.1 * (x - cr.stop_gradient(x)))
    x = rng.standard_normal(3)
    for _ in range(2):                  # the second time through templates made the first
        h = cr.jacrev(cr.grad(lambda x: np.sum(p.bind(x))))(x)
        np.testing.assert_allclose(h, np.diag(-np.sin(x) + 0.1), rtol=1e-12, atol=1e-14)


def test_a_primitive_whose_shape_rule_disagrees_with_its_outputs_keeps_its_rule():
    """Templates are traced with shapes only; a wrong shape rule (here: scalars for
    vectors) must not turn into a wrong or zero gradient."""
    from chainrule.core.ir import Aval
    from chainrule.core.primitive import primitive
    p = primitive("test_cube_wrong_shape_rule", lambda x: x ** 3, lambda a: Aval((), a.dtype),
                  jvp=lambda primals, tangents, outs: [tangents[0] * 3 * primals[0] ** 2])
    x = rng.standard_normal(4)
    for _ in range(2):
        np.testing.assert_allclose(cr.grad(lambda x: np.sum(p.bind(x)))(x), 3 * x ** 2)
    assert not [k for k, t in templates._templates.items() if k[1] is p and t is not None]


def test_a_symbolic_zero_tangent_records_nothing_downstream():
    x = rng.standard_normal(3)
    _, pullback = tape.tape_flat(lambda x: [np.sum(np.exp(cr.stop_gradient(x)) * 2.0)], [x],
                                 [True])
    assert pullback([np.ones(())]) == [None]          # nothing flowed back
    np.testing.assert_allclose(cr.grad(lambda x: np.sum(cr.stop_gradient(x) ** 2 + x))(x),
                               np.ones(3))


def test_a_reused_pullback_writes_into_nothing_it_was_given():
    """The tanh template computes ct * (1 - y*y): 1 - y*y overwrites y*y, and the
    product overwrites that. A pullback that may be called again keeps the saved y, so
    y*y takes a new array; the saved y, the cotangents and the inputs are never
    written."""
    W, X = rng.standard_normal((4, 3)), rng.standard_normal((5, 4))
    f = lambda W: np.sum(np.tanh(X @ W) ** 2)
    before = W.copy(), X.copy()
    _, pullback = cr.vjp(f, W)
    seed = np.ones(())
    for _ in range(3):                          # the same tape, pulled back again
        got = pullback(seed)[0]
        y = np.tanh(X @ W)
        np.testing.assert_allclose(got, X.T @ (2 * y * (1 - y * y)), rtol=1e-12)
    np.testing.assert_array_equal(W, before[0])
    np.testing.assert_array_equal(X, before[1])
    assert seed == 1.0
    tanh = _vjp_templates(prims["tanh"])[-1]
    # where each result may go: y*y into y if unshared, 1 - c into c (made by the
    # program), ct * d into d (the donor ct is not needed then)
    assert [step[-2:] for step in tanh.program] == [(None, (0, 1)), (1, ()), (1, (0,))]


def _tanh_template(shape):
    x = rng.standard_normal(shape)
    cr.grad(lambda x: np.sum(np.tanh(x)))(x)
    return templates._templates[templates.signature(tape.vjp_template, prims["tanh"], {},
                                                    [x], [1])]


def test_a_template_overwrites_an_argument_only_when_nothing_else_holds_it():
    tanh = _tanh_template((6,))
    y, ct = np.tanh(rng.standard_normal(6)), rng.standard_normal(6)
    want = ct * (1 - y * y)
    args = [y.copy(), ct.copy()]                # the list holds the only references
    address = args[0].ctypes.data
    got = tanh(args)[0]
    np.testing.assert_allclose(got, want, rtol=1e-15)
    assert got.ctypes.data == address           # y*y, 1 - y*y and the product, in place
    held = [y.copy(), ct.copy()]
    got = tanh(list(held))[0]                   # the caller still holds both arrays
    np.testing.assert_allclose(got, want, rtol=1e-15)
    np.testing.assert_array_equal(held[0], y)
    np.testing.assert_array_equal(held[1], ct)
    view = y.copy()[::-1][::-1]                 # a view: its base may be seen elsewhere
    got = tanh([view, ct.copy()])[0]
    np.testing.assert_array_equal(view, y)
    np.testing.assert_allclose(got, want, rtol=1e-15)


def test_grad_frees_what_the_tape_saved_but_leaves_what_the_user_holds():
    """grad pulls back once, so its tape hands the saved tanh output to the template,
    which may overwrite it; here the function returns it as auxiliary data, so it
    must come back intact."""
    W, X = rng.standard_normal((4, 3)), rng.standard_normal((5, 4))

    def f(W):
        y = np.tanh(X @ W)
        return np.sum(y ** 2), y
    for _ in range(3):                          # the later calls run on templates
        g, y = cr.grad(f, has_aux=True)(W)
        want = np.tanh(X @ W)
        np.testing.assert_array_equal(y, want)
        np.testing.assert_allclose(g, X.T @ (2 * want * (1 - want * want)), rtol=1e-12)


@pytest.mark.parametrize("f, args", FUNCTIONS)
def test_grad_with_its_single_pullback_equals_linearize_then_transpose(f, args):
    ct = rng.standard_normal(np.shape(f(*args)))
    loss = lambda *a: np.sum(f(*a) * ct)
    for _ in range(2):
        got = cr.grad(loss, argnums=tuple(range(len(args))))(*args)
        for g, want in zip(got, _linearized_vjp(f, args, ct)):
            np.testing.assert_allclose(g, want, rtol=1e-12, atol=1e-14)


def test_jacrev_runs_the_tape_backwards_once_on_the_whole_basis():
    """One batched backward pass: templates, the general route (cond, custom_vjp), a value
    used twice (two diagonal cotangents added), several outputs (eigh) and an input that
    gets no cotangent, against forward mode."""
    @cr.custom_vjp
    def halved(x):
        return x / 2
    halved.defvjp(lambda x: (x / 2, None), lambda res, g: (g / 2,))

    def f(x, unused):
        y = np.sin(x) * x + halved(x)
        z = cr.cond(x[0] > 0, lambda v: v * 3.0, lambda v: v - 1.0, y)
        w, _ = np.linalg.eigh(np.outer(z, z) + np.eye(3))
        return np.concatenate([z * z, w])

    x, unused = rng.standard_normal(3), rng.standard_normal(2)
    for _ in range(2):
        got = cr.jacrev(f, argnums=(0, 1))(x, unused)
        want = cr.jacfwd(f, argnums=(0, 1))(x, unused)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(got[1], np.zeros((6, 2)))


def test_hessian_of_scalar_and_of_vector_valued_functions():
    """Against the closed forms: for a vector-valued function hessian is jacfwd(jacrev(f)),
    so that pair cannot serve as its reference."""
    f = lambda x: np.stack([np.sum(x ** 3), np.sum(np.sin(x) * x)])
    x = rng.standard_normal(4)
    cube, sin_x = np.diag(6 * x), np.diag(2 * np.cos(x) - x * np.sin(x))
    np.testing.assert_allclose(cr.hessian(f)(x), np.stack([cube, sin_x]), rtol=1e-12,
                               atol=1e-12)
    g = lambda x: np.sum(x ** 3) + np.sum(np.sin(x) * x)
    np.testing.assert_allclose(cr.hessian(g)(x), cube + sin_x, rtol=1e-12, atol=1e-12)


def test_a_template_on_a_dense_batch_runs_a_batched_program_made_once():
    tanh = _tanh_template((4,))                 # made at once, in the suite
    y = np.tanh(rng.standard_normal(4))
    cts = rng.standard_normal((3, 4))
    want = cts * (1 - y * y)                    # d tanh = 1 - tanh^2, per cotangent
    for _ in range(2):
        np.testing.assert_allclose(tanh.batched([y, cts], [None, 0], 3)[0], want, rtol=1e-14)
    assert list(tanh.batched_programs) == [((None, 0), 3)]
