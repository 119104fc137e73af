"""Structured control flow: values against Python loops, first and second derivatives in
both modes against finite differences (check_grads) and closed forms, data-dependent
trip counts, nested loops, cond inside scan, batching, printing, and the errors."""
import numpy as np
import pytest

import chainrule as cr
from chainrule.core.errors import ShapeError
from chainrule.test_util import check_grads

rng = np.random.default_rng(0)
A = rng.standard_normal((3, 3)) / 3


def normal(*shape):
    return rng.standard_normal(shape)


# --------------------------------------------------------------------------- scan

def rnn(x, ws):
    """A small recurrent network with two outputs per step."""
    def step(c, w):
        h = np.tanh(A @ c * w["scale"] + w["shift"])
        return h, {"norm": np.sum(h * h), "first": h[0]}
    return cr.scan(step, x, ws)


def rnn_reference(x, ws):
    c, norms, firsts = x, [], []
    for k in range(len(ws["scale"])):
        c = np.tanh(A @ c * ws["scale"][k] + ws["shift"][k])
        norms.append(np.sum(c * c))
        firsts.append(c[0])
    return c, {"norm": np.stack(norms), "first": np.stack(firsts)}


def rnn_params():
    return {"scale": normal(4), "shift": normal(4, 3)}


def test_scan_values_with_pytrees():
    x, ws = normal(3), rnn_params()
    got, want = rnn(x, ws), rnn_reference(x, ws)
    np.testing.assert_allclose(got[0], want[0])
    for k in ("norm", "first"):
        np.testing.assert_allclose(got[1][k], want[1][k])


def test_scan_reverse_and_length_without_xs():
    xs = normal(5)
    carry, ys = cr.scan(lambda c, x: (c * 0.5 + x, c), 0.0, xs, reverse=True)
    c, want = 0.0, np.zeros(5)
    for i in reversed(range(5)):
        want[i] = c
        c = c * 0.5 + xs[i]
    np.testing.assert_allclose(ys, want)
    np.testing.assert_allclose(carry, c)
    total, none = cr.scan(lambda c, _: (c + 1.0, None), 0.0, length=7)
    assert float(total) == 7.0 and none is None


def test_scan_derivatives_both_modes_second_order():
    x, ws = normal(3), rnn_params()
    f = lambda x, ws: np.sum(rnn(x, ws)[0]) + np.sum(rnn(x, ws)[1]["norm"] ** 2)
    check_grads(f, (x, ws), order=2)
    g = cr.grad(f, argnums=(0, 1))(x, ws)
    want = cr.grad(lambda x, ws: np.sum(rnn_reference(x, ws)[0])
                   + np.sum(rnn_reference(x, ws)[1]["norm"] ** 2), argnums=(0, 1))(x, ws)
    np.testing.assert_allclose(g[0], want[0], rtol=1e-10)
    np.testing.assert_allclose(g[1]["shift"], want[1]["shift"], rtol=1e-10)


def test_scan_reverse_derivatives():
    f = lambda c0, xs: np.sum(cr.scan(lambda c, x: (np.sin(c) * x, c * x), c0, xs,
                                      reverse=True)[1])
    check_grads(f, (normal(2), normal(4, 2)), order=2)


def test_scan_closed_form_product():
    """c_n = c_0 * prod(a): d c_n / d c_0 = prod(a), d c_n / d a_k = c_n / a_k."""
    a = rng.uniform(0.5, 1.5, 6)
    f = lambda c0, a: cr.scan(lambda c, x: (c * x, None), c0, a)[0]
    dc0, da = cr.grad(f, argnums=(0, 1))(2.0, a)
    np.testing.assert_allclose(dc0, np.prod(a))
    np.testing.assert_allclose(da, 2.0 * np.prod(a) / a)


# --------------------------------------------------------------------------- fori_loop

def test_fori_loop_closed_form_and_derivatives():
    """x_{k+1} = r x_k + i: a polynomial in r whose derivative we know."""
    f = lambda r, x: cr.fori_loop(0, 5, lambda i, x: r * x + i, x)
    r, x = 1.3, 0.7
    want = r ** 5 * x + sum(i * r ** (4 - i) for i in range(5))
    np.testing.assert_allclose(f(r, x), want)
    dr = 5 * r ** 4 * x + sum(i * (4 - i) * r ** (3 - i) for i in range(4))
    np.testing.assert_allclose(cr.grad(f)(r, x), dr)
    np.testing.assert_allclose(cr.grad(cr.grad(f, 1), 0)(r, x), 5 * r ** 4)
    check_grads(lambda r, x: np.sin(f(r, x)), (np.array(r), np.array(x)), order=2)


def test_fori_loop_over_arrays_both_modes():
    f = lambda x: np.sum(cr.fori_loop(2, 6, lambda i, c: np.sin(A @ c) + c * i / 10, x) ** 2)
    check_grads(f, (normal(3),), order=2)


def test_fori_loop_traced_once_whatever_the_trip_count():
    body = lambda i, c: np.tanh(A @ c) + i
    short = cr.make_graph(lambda x: cr.fori_loop(0, 10, body, x))(normal(3))
    long = cr.make_graph(lambda x: cr.fori_loop(0, 10_000, body, x))(normal(3))
    assert str(short).replace("length=10,", "length=10000,") == str(long)
    assert "scan[body={" in str(long) and "tanh" in str(long)


# --------------------------------------------------------------------------- while_loop

def doubling(x, bound):
    """Doubles x until its norm exceeds bound: the trip count depends on the data."""
    return cr.while_loop(lambda c: np.sum(c * c) < bound, lambda c: c * 2.0 + 0.01, x)


def test_while_loop_data_dependent_trip_count():
    x = np.array([0.3, -0.2])
    got = doubling(x, 100.0)
    c, n = x, 0
    while np.sum(c * c) < 100.0:
        c, n = c * 2.0 + 0.01, n + 1
    np.testing.assert_allclose(got, c)
    # x_n = 2^n x + 0.01 (2^n - 1): the Jacobian is 2^n I for the trip count n here.
    jac = cr.jacobian(lambda x: doubling(x, 100.0), mode="rev")(x)
    np.testing.assert_allclose(jac, 2.0 ** n * np.eye(2))
    assert n == 5
    small = np.array([0.03, -0.02])
    assert np.allclose(cr.jacfwd(lambda x: doubling(x, 100.0))(small), 2.0 ** 8 * np.eye(2))


def test_while_loop_derivatives_both_modes_second_order():
    def f(x, w):
        out = cr.while_loop(lambda c: c[1] < 4, lambda c: (np.sin(A @ c[0]) * w + c[0], c[1] + 1),
                            (x, 0))
        return np.sum(out[0] ** 2)
    check_grads(f, (normal(3), normal(3)), order=2)


def test_while_loop_forward_mode_under_vmap():
    xs = normal(4, 2) * 0.1
    tangent = lambda x: cr.jvp(lambda x: doubling(x, 50.0), (x,), (np.ones(2),))[1]
    got = cr.vmap(tangent)(xs)
    np.testing.assert_allclose(got, np.stack([tangent(x) for x in xs]))


def test_grad_of_vmapped_while_loop_is_per_example_trip_count():
    xs = np.array([[0.3, 0.2], [0.01, 0.02], [1.0, 2.0]])
    total = lambda xs: np.sum(cr.vmap(lambda x: doubling(x, 30.0))(xs))
    want = np.stack([cr.grad(lambda x: np.sum(doubling(x, 30.0)))(x) for x in xs])
    np.testing.assert_allclose(cr.grad(total)(xs), want)


def test_reverse_mode_through_while_loop_with_shapes_only():
    """Inside vmap (and jit) the trip count is unknown when tracing; the transpose then
    runs the loop forward storing the carries, then backwards."""
    def f(x, w):
        return np.sum(cr.while_loop(lambda c: np.sum(c * c) < 30.0,
                                    lambda c: np.sin(c) * w + c * 1.5, x) ** 2)
    xs, w = np.array([[0.3, 0.2], [0.01, 0.02], [1.0, 2.0]]), np.array([0.5, -0.2])
    per_example = cr.vmap(cr.grad(f, argnums=(0, 1)), (0, None))(xs, w)
    for k, x in enumerate(xs):
        want = cr.grad(f, argnums=(0, 1))(x, w)
        np.testing.assert_allclose(per_example[0][k], want[0], rtol=1e-12)
        np.testing.assert_allclose(per_example[1][k], want[1], rtol=1e-12)
    tangent = cr.vmap(lambda x: cr.jvp(f, (x, w), (np.ones(2), w))[1])(xs)
    np.testing.assert_allclose(tangent, [cr.jvp(f, (x, w), (np.ones(2), w))[1] for x in xs])


# --------------------------------------------------------------------------- cond

def branchy(x, w):
    return cr.cond(np.sum(x) > 0, lambda x: np.sin(x) * w, lambda x: np.cos(x) * A[0], x)


def test_cond_values_and_derivatives_in_both_branches():
    w = normal(3)
    for x in (np.abs(normal(3)), -np.abs(normal(3))):
        want = np.sin(x) * w if np.sum(x) > 0 else np.cos(x) * A[0]
        np.testing.assert_allclose(branchy(x, w), want)
        check_grads(lambda x, w: np.sum(branchy(x, w) ** 2), (x, w), order=2)
    x = np.abs(normal(3))
    np.testing.assert_allclose(cr.grad(lambda x: np.sum(branchy(x, w)))(x), np.cos(x) * w)


def test_cond_with_pytree_operands_and_outputs():
    out = cr.cond(False, lambda p: {"s": p[0] + p[1]}, lambda p: {"s": p[0] * p[1]},
                  (np.ones(2), np.full(2, 3.0)))
    np.testing.assert_allclose(out["s"], np.full(2, 3.0))


def test_cond_inside_scan():
    def f(x, ys):
        def step(c, y):
            c = cr.cond(y > 0, lambda c: np.tanh(c * y), lambda c: c * c * y, c)
            return c, np.sum(c)
        return np.sum(cr.scan(step, x, ys)[1])
    x, ys = normal(2), np.array([0.5, -0.7, 1.2, -0.3])
    c, want = x, 0.0
    for y in ys:
        c = np.tanh(c * y) if y > 0 else c * c * y
        want += np.sum(c)
    np.testing.assert_allclose(f(x, ys), want)
    check_grads(f, (x, ys), order=2)


def test_nested_loops():
    def f(x):
        def outer(i, c):
            inner, _ = cr.scan(lambda d, k: (np.sin(d) * k + c, None), c, np.arange(1.0, 3.0))
            return inner * 0.5
        return np.sum(cr.fori_loop(0, 3, outer, x))

    def reference(x):
        c = x
        for _ in range(3):
            d = c
            for k in (1.0, 2.0):
                d = np.sin(d) * k + c
            c = d * 0.5
        return np.sum(c)
    x = normal(2)
    np.testing.assert_allclose(f(x), reference(x))
    check_grads(f, (x,), order=2)


# --------------------------------------------------------------------------- batching

def test_vmap_of_scan_with_batch_axes_in_every_position():
    scale = rnn_params()["scale"]
    f = lambda x, shift: rnn(x, {"scale": scale, "shift": shift})[1]["norm"]
    xs, shifts = normal(5, 3), normal(5, 4, 3)
    for x_axis in (0, 1, None):
        for s_axis in (0, 1, 2, None):
            if x_axis is None and s_axis is None:
                continue
            x_b = xs[0] if x_axis is None else np.moveaxis(xs, 0, x_axis)
            s_b = shifts[0] if s_axis is None else np.moveaxis(shifts, 0, s_axis)
            got = cr.vmap(f, in_axes=(x_axis, s_axis))(x_b, s_b)
            want = np.stack([f(xs[0 if x_axis is None else i], shifts[0 if s_axis is None else i])
                             for i in range(5)])
            np.testing.assert_allclose(got, want, err_msg=str((x_axis, s_axis)))


def test_vmap_of_while_loop_with_per_example_trip_counts():
    xs = np.array([[0.3, 0.2], [0.01, 0.02], [1.0, 2.0]])
    got = cr.vmap(lambda x: doubling(x, 30.0))(xs)
    np.testing.assert_allclose(got, np.stack([doubling(x, 30.0) for x in xs]))
    bounds = np.array([1.0, 50.0, 400.0])
    got = cr.vmap(doubling, in_axes=(None, 0))(xs[0], bounds)
    np.testing.assert_allclose(got, np.stack([doubling(xs[0], b) for b in bounds]))


def test_vmap_of_cond_with_batched_and_unbatched_predicates():
    xs, w = normal(5, 3), normal(3)
    np.testing.assert_allclose(cr.vmap(branchy, (0, None))(xs, w),
                               np.stack([branchy(x, w) for x in xs]))
    same_branch = lambda x, flag: cr.cond(flag, lambda x: x * 2, lambda x: -x, x)
    np.testing.assert_allclose(cr.vmap(same_branch, (0, None))(xs, True), xs * 2)


def test_grad_of_vmap_of_fori_loop():
    xs = normal(4, 3)
    f = lambda x: np.sum(cr.fori_loop(0, 4, lambda i, c: np.tanh(A @ c) * (i + 1), x))
    total = lambda xs: np.sum(cr.vmap(f)(xs))
    np.testing.assert_allclose(cr.grad(total)(xs), np.stack([cr.grad(f)(x) for x in xs]))
    np.testing.assert_allclose(cr.vmap(cr.grad(f))(xs), np.stack([cr.grad(f)(x) for x in xs]))


# --------------------------------------------------------------------------- printing and errors

def test_graph_prints_sub_graphs():
    text = str(cr.make_graph(lambda x: branchy(x, np.ones(3)))(normal(3)))
    assert "cond[branches=" in text and "sin" in text and "cos" in text


def test_error_carry_changes_dtype():
    with pytest.raises(ShapeError, match="start a float carry from 0.0, not 0"):
        cr.fori_loop(0, 3, lambda i, c: c + 0.5, 0)


def test_error_scan_lengths_disagree():
    with pytest.raises(ShapeError, match=r"disagree: \[2, 3\]"):
        cr.scan(lambda c, x: (c, x), 0.0, (np.ones(2), np.ones(3)))


def test_error_scan_body_not_a_pair():
    with pytest.raises(ShapeError, match="must return a pair"):
        cr.scan(lambda c, x: c, 0.0, np.ones(2))


def test_error_cond_branches_differ():
    with pytest.raises(ShapeError, match="branches return different"):
        cr.cond(True, lambda x: x, lambda x: x[:1], np.ones(2))


def test_error_cond_predicate_not_scalar():
    with pytest.raises(ShapeError, match="predicate must be a scalar"):
        cr.cond(np.ones(2) > 0, lambda x: x, lambda x: x, np.ones(2))


def test_error_while_cond_not_scalar():
    with pytest.raises(ShapeError, match="cond_fun must return a scalar"):
        cr.while_loop(lambda c: c > 0, lambda c: c - 1.0, np.ones(2))


def test_derivatives_of_loops_inside_jit():
    def f(x, w):
        return np.sum(cr.while_loop(lambda c: np.sum(c * c) < 30.0,
                                    lambda c: np.sin(c) * w + c * 1.5, x) ** 2)
    x, w = np.array([0.3, 0.2]), np.array([0.5, -0.2])
    for got, want in zip(cr.jit(cr.grad(f, argnums=(0, 1)))(x, w),
                         cr.grad(f, argnums=(0, 1))(x, w)):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    g = lambda x: np.sum(cr.fori_loop(0, 5, lambda i, c: np.sin(c) * 1.1 + i * 0.1, x) ** 2)
    np.testing.assert_allclose(cr.jit(cr.hessian(g))(x), cr.hessian(g)(x), rtol=1e-12)
    h = lambda x: np.sum(cr.scan(lambda c, y: (cr.cond(y > 0, np.sin, np.cos, c * y), c),
                                 x, np.array([1.0, -2.0]))[1])
    np.testing.assert_allclose(cr.jit(cr.grad(h))(x), cr.grad(h)(x), rtol=1e-12)


def counted(x, w):
    """A data-dependent while_loop with a float carry, an integer counter and a
    closed-over parameter (a const of the body)."""
    out = cr.while_loop(lambda c: np.sum(c[0] * c[0]) < 30.0,
                        lambda c: (np.sin(c[0]) * w + c[0] * 1.5, c[1] + 1), (x, 0))
    return np.sum(out[0] ** 2) * out[1]


SECOND_ORDER = {
    "hessian": lambda f: cr.hessian(f, argnums=(0, 1)),
    "jacfwd(jacfwd)": lambda f: cr.jacfwd(cr.jacfwd(f, argnums=(0, 1)), argnums=(0, 1)),
    "jacrev(grad)": lambda f: cr.jacrev(cr.grad(f, argnums=(0, 1)), argnums=(0, 1)),
    "jacrev(jacfwd)": lambda f: cr.jacrev(cr.jacfwd(f, argnums=(0, 1)), argnums=(0, 1)),
}


def assert_blocks_close(got, want, rtol=1e-9):
    for g_row, w_row in zip(got, want):
        for g, w in zip(g_row, w_row):
            np.testing.assert_allclose(g, w, rtol=rtol, atol=1e-9 * np.max(np.abs(w)))


@pytest.mark.parametrize("order", sorted(SECOND_ORDER))
def test_second_order_through_while_loop_inside_jit(order):
    """Inside jit the trip count is unknown while tracing: the derivative loops are
    differentiated as loops (forward and reverse, in every combination)."""
    x, w = np.array([0.3, 0.2]), np.array([0.5, -0.2])
    second = SECOND_ORDER[order]
    assert_blocks_close(cr.jit(second(counted))(x, w), second(counted)(x, w))


@pytest.mark.parametrize("order", sorted(SECOND_ORDER))
def test_second_order_through_while_loop_under_vmap(order):
    """Per-example trip counts (a batched predicate): the finished examples' carries and
    tangents stay frozen in every derivative loop."""
    xs, w = np.array([[0.3, 0.2], [0.01, 0.02], [1.0, 2.0]]), np.array([0.5, -0.2])
    trips = [counted(x, w) / np.sum(cr.while_loop(
        lambda c: np.sum(c * c) < 30.0, lambda c: np.sin(c) * w + c * 1.5, x) ** 2)
        for x in xs]
    assert len(set(np.round(trips))) == 3
    second = SECOND_ORDER[order]
    got = cr.vmap(second(counted), (0, None))(xs, w)
    for k, x in enumerate(xs):
        want = second(counted)(x, w)
        assert_blocks_close([[b[k] for b in row] for row in got], want)


def test_hessian_of_while_loop_under_vmap_with_batch_axes_in_other_positions():
    xs, ws = np.array([[0.3, 0.2], [0.01, 0.02], [1.0, 2.0]]), normal(3, 2) * 0.3
    hess = SECOND_ORDER["hessian"](counted)
    got = cr.vmap(hess, in_axes=(1, 0))(xs.T, ws)
    for k in range(3):
        assert_blocks_close([[b[k] for b in row] for row in got], hess(xs[k], ws[k]))
    got = cr.vmap(hess, in_axes=(None, 1))(xs[0], ws.T)
    for k in range(3):
        assert_blocks_close([[b[k] for b in row] for row in got], hess(xs[0], ws[k]))


def test_second_order_through_while_loop_against_finite_differences():
    """The derivative loops' own JVP and transpose rules (traced inside jit and vmap,
    then differentiated) against finite differences, up to third order."""
    x, w = np.array([0.3, 0.2]), np.array([0.5, -0.2])
    check_grads(cr.jit(cr.grad(counted, argnums=(0, 1))), (x, w), order=2)
    check_grads(cr.jit(lambda x, w: cr.jvp(counted, (x, w), (w, x))[1]), (x, w), order=2)
    xs = np.array([[0.3, 0.2], [0.01, 0.02], [1.0, 2.0]])
    check_grads(lambda xs, w: cr.vmap(cr.grad(counted, argnums=(0, 1)), (0, None))(xs, w),
                (xs, w), order=2)


def test_hessian_of_while_loop_closed_form_inside_jit_and_vmap():
    """x_n = 2^n x + 0.01 (2^n - 1): the Hessian of |x_n|^2 is 2 4^n I (n = 4 at x; under
    vmap each example has its own n)."""
    f = lambda x: np.sum(doubling(x, 30.0) ** 2)
    x = np.array([0.3, 0.2])
    for hess in (cr.hessian(f), cr.jit(cr.hessian(f)), cr.jit(cr.jacrev(cr.grad(f)))):
        np.testing.assert_allclose(hess(x), 2 * 4.0 ** 4 * np.eye(2))
    xs = np.array([[0.3, 0.2], [3.0, 2.0], [6.0, 2.0]])
    np.testing.assert_allclose(cr.vmap(cr.hessian(f))(xs),
                               [2 * 4.0 ** n * np.eye(2) for n in (4, 1, 0)])


def nested(x, w):
    """A while_loop whose body runs a while_loop, a fori_loop and a cond."""
    def body(c):
        inner = cr.while_loop(lambda d: np.sum(d * d) < np.sum(c * c) * 2.0,
                              lambda d: d * 1.3 + np.sin(d) * w, c * 0.5)
        inner = cr.fori_loop(0, 2, lambda i, d: np.tanh(A[:2, :2] @ d) + d, inner)
        return cr.cond(np.sum(inner) > 0, lambda v: v * 1.1, lambda v: v * 0.9 - 0.1, inner)
    return np.sum(cr.while_loop(lambda c: np.sum(c * c) < 50.0, body, x) ** 3)


def test_second_order_through_nested_loops_inside_jit_and_vmap():
    """Compiled and under vmap: every order (reverse at second order puts array
    constants into loop bodies, which the generated module holds as constants)."""
    x, w = np.array([0.3, 0.2]), np.array([0.5, -0.2])
    for fn in (cr.grad(nested, argnums=(0, 1)), SECOND_ORDER["jacfwd(jacfwd)"](nested),
               SECOND_ORDER["hessian"](nested), SECOND_ORDER["jacrev(grad)"](nested),
               lambda x, w: cr.jvp(nested, (x, w), (w, x))[1]):
        got, want = cr.jit(fn)(x, w), fn(x, w)
        for g, v in zip(np.ravel(got), np.ravel(want)):
            np.testing.assert_allclose(g, v, rtol=1e-9)
    check_grads(cr.jit(cr.grad(nested, argnums=(0, 1))), (x, w), order=1)
    xs = np.array([[0.3, 0.2], [0.01, 0.02], [1.0, 2.0]])
    np.testing.assert_allclose(cr.vmap(cr.hessian(nested), (0, None))(xs, w),
                               [cr.hessian(nested)(x, w) for x in xs], rtol=1e-9)
    check_grads(lambda xs, w: cr.vmap(cr.grad(nested, argnums=(0, 1)), (0, None))(xs, w),
                (xs, w), order=1)


def test_vmap_of_nested_loops():
    """The inner loop's counter starts from a literal, which the batch rule broadcasts."""
    f = lambda x: cr.fori_loop(0, 2, lambda i, c: cr.fori_loop(
        0, 3, lambda j, d: np.sin(d) * 1.5 + 0.1, c), x)
    xs = normal(4, 2)
    np.testing.assert_allclose(cr.vmap(f)(xs), [f(x) for x in xs])


def test_jit_source_of_while_loop_derivatives_is_standalone():
    """The derivative loops are written as Python loops of the generated module: the
    transpose keeps the carries in a list and walks it backwards."""
    x, w = np.array([0.3, 0.2]), np.array([0.5, -0.2])
    for second in SECOND_ORDER.values():
        text = cr.source(second(counted), x, w)
        assert "chainrule" not in text and "impl_" not in text
    text = cr.source(cr.grad(counted, argnums=(0, 1)), x, w)
    assert ".append((" in text and "in reversed(" in text
    jvp = lambda x, w: cr.jvp(counted, (x, w), (w, x))[1]
    assert "tangent_body(" in cr.source(jvp, x, w)
    np.testing.assert_allclose(cr.jit(jvp)(x, w), jvp(x, w), rtol=1e-12)
    xs = np.array([[0.3, 0.2], [0.01, 0.02], [1.0, 2.0]])
    per_example = cr.vmap(SECOND_ORDER["hessian"](counted), (0, None))   # frozen loops
    text = cr.source(per_example, xs, w)
    assert "impl_" not in text, [l for l in text.splitlines() if "impl_" in l]
    assert_blocks_close(cr.jit(per_example)(xs, w), per_example(xs, w))
