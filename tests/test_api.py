"""The public transformations: values, structure, composition, errors."""
from collections import namedtuple
from dataclasses import dataclass

import numpy as np
import pytest

from benchmarks.workloads import rosenbrock_hessian
import chainrule as cr
from chainrule.test_util import check_grads

rng = np.random.default_rng(1)


def f(x, W):
    return np.sum(np.tanh(W @ x) ** 2) + np.log1p(np.exp(x)).mean()


def f_grad_by_hand(x, W):
    h = np.tanh(W @ x)
    gx = W.T @ (2 * h * (1 - h ** 2)) + 1 / (1 + np.exp(-x)) / x.size
    gW = np.outer(2 * h * (1 - h ** 2), x)
    return gx, gW


X, W = rng.standard_normal(4), rng.standard_normal((3, 4))


def test_grad_matches_hand_derivation():
    gx, gW = f_grad_by_hand(X, W)
    np.testing.assert_allclose(cr.grad(f)(X, W), gx, rtol=1e-12)
    g = cr.grad(f, argnums=(0, 1))(X, W)
    np.testing.assert_allclose(g[0], gx, rtol=1e-12)
    np.testing.assert_allclose(g[1], gW, rtol=1e-12)
    value, g0 = cr.value_and_grad(f)(X, W)
    assert value == pytest.approx(f(X, W)) and np.allclose(g0, gx)


def test_jvp_vjp_linearize_agree():
    dx, dW = rng.standard_normal(4), rng.standard_normal((3, 4))
    y, ydot = cr.jvp(f, (X, W), (dx, dW))
    gx, gW = f_grad_by_hand(X, W)
    assert ydot == pytest.approx(gx @ dx + np.sum(gW * dW))
    y2, pullback = cr.vjp(f, X, W)
    cx, cW = pullback(1.0)
    np.testing.assert_allclose(cx, gx)
    y3, f_lin = cr.linearize(f, X, W)
    assert f_lin(dx, dW) == pytest.approx(ydot)
    assert y == y2 == y3


def test_jacobians_and_hessian():
    g = lambda x: np.sin(W @ x) * 2
    J = np.cos(W @ X)[:, None] * 2 * W
    for jac in (cr.jacfwd(g), cr.jacrev(g), cr.jacobian(g), cr.jacobian(g, mode="rev")):
        np.testing.assert_allclose(jac(X), J, rtol=1e-12)
    rosen = lambda x: np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    x = rng.standard_normal(5)
    H = cr.hessian(rosen)(x)
    np.testing.assert_allclose(H, rosenbrock_hessian(x), rtol=1e-10)   # derived by hand


def test_jacobian_auto_runs_the_function_once_and_picks_the_cheaper_mode():
    from chainrule.core.ir import aval_of
    from chainrule.core.primitive import primitive
    # A linear primitive with a JVP rule and no transpose rule: only forward mode works.
    doubled = primitive("test_doubled_forward_only", lambda x: 2 * x, aval_of,
                        jvp=lambda p, t, o: [doubled.bind(t[0])])
    calls = []

    def widen(x):            # R^2 -> R^6: forward mode is cheaper
        calls.append(1)
        return doubled.bind(np.concatenate([x, x ** 2, np.sin(x)]))

    x = np.array([0.3, -1.2])
    J = cr.jacobian(widen)(x)
    assert len(calls) == 1
    np.testing.assert_allclose(J, 2 * np.vstack([np.eye(2), np.diag(2 * x), np.diag(np.cos(x))]))
    narrow = lambda x: np.sum(doubled.bind(x))        # R^2 -> R: reverse mode
    with pytest.raises(cr.NonDifferentiableError, match="no transpose rule"):
        cr.jacobian(narrow)(x)
    np.testing.assert_allclose(cr.jacobian(narrow, mode="fwd")(x), [2.0, 2.0])


def test_jacobian_auto_remembers_the_direction_for_each_shape_of_the_inputs(monkeypatch):
    from chainrule import api
    linearized = []

    class Counted(api._Linearized):
        def __init__(self, *a, **k):
            linearized.append(1)
            super().__init__(*a, **k)
    monkeypatch.setattr(api, "_Linearized", Counted)
    A = rng.standard_normal((3, 3))
    square = cr.jacobian(lambda x: np.tanh(A @ x) * x)
    for k in range(3):
        x = rng.standard_normal(3)
        t = np.tanh(A @ x)
        np.testing.assert_allclose(square(x), np.diag(t) + ((1 - t * t) * x)[:, None] * A,
                                   rtol=1e-12)
        assert len(linearized) == 1         # later calls go backwards on a tape
    square(rng.standard_normal(3).astype(np.float32))        # a new signature
    assert len(linearized) == 2
    # the same input shape, a wider output (Python control flow on values): the tape's
    # guess is wrong, found out, and the Jacobian is right
    grow = cr.jacobian(lambda x: np.sin(x) if x[0] > 0 else np.concatenate([np.sin(x)] * 3))
    x = np.array([0.5, 0.2, -0.1])
    np.testing.assert_allclose(grow(x), np.diag(np.cos(x)), rtol=1e-14)
    np.testing.assert_allclose(grow(-x), np.vstack([np.diag(np.cos(x))] * 3), rtol=1e-14)


def test_any_order_and_mixed_modes():
    assert cr.grad(cr.grad(cr.grad(np.sin)))(1.0) == pytest.approx(-np.cos(1.0))
    assert cr.grad(cr.grad(lambda x: x ** 3))(3.0) == pytest.approx(18.0)
    # jvp of grad, jacfwd of grad
    d2 = cr.jvp(cr.grad(lambda x: np.exp(2 * x)), (0.5,), (1.0,))[1]
    assert d2 == pytest.approx(4 * np.exp(1.0))
    H = cr.jacfwd(cr.grad(lambda x: np.sum(x ** 4)))(np.array([1.0, 2.0]))
    np.testing.assert_allclose(H, np.diag([12.0, 48.0]))


def test_closures_do_not_confuse_levels():
    # d/dx [ d/dy (x*y) at y=1 ] = 1  (perturbation confusion guard)
    assert cr.grad(lambda x: cr.grad(lambda y: x * y)(1.0))(2.0) == 1.0
    assert cr.grad(lambda x: x * cr.grad(lambda y: x * y ** 2)(3.0))(2.0) == 24.0


Params = namedtuple("Params", "w b")


@cr.register_dataclass
@dataclass
class Layer:
    w: np.ndarray
    b: np.ndarray


def test_pytrees_in_and_out():
    p = {"layer": [Params(np.ones(3), 2.0)], "scale": np.array(0.5)}
    loss = lambda p, x: p["scale"] * np.sum((p["layer"][0].w * x + p["layer"][0].b) ** 2)
    g = cr.grad(loss)(p, np.arange(3.0))
    assert isinstance(g["layer"][0], Params) and g["layer"][0].w.shape == (3,)
    np.testing.assert_allclose(g["layer"][0].w, 0.5 * 2 * (np.arange(3.0) + 2) * np.arange(3.0))
    layer = Layer(np.ones(2), np.zeros(2))
    g = cr.grad(lambda l: np.sum(l.w * l.b + l.w ** 2))(layer)
    assert isinstance(g, Layer) and np.allclose(g.w, 2.0)
    out, pullback = cr.vjp(lambda x: {"a": x * 2, "b": (x, x ** 2)}, np.ones(2))
    ct = pullback({"a": np.ones(2), "b": (np.ones(2), np.ones(2))})
    np.testing.assert_allclose(ct[0], 2 + 1 + 2)


def test_in_place_updates_are_functional():
    def g(x):
        y = x * 1.0
        y[1] = 5 * x[0]
        y += x
        y[y > 4] *= 2.0
        return np.sum(y ** 2)
    check_grads(g, (np.array([1.0, 2.0, 3.0]),), order=2)

    def h(x):
        z = np.zeros_like(x)
        for i in range(3):
            z[i] = x[i] * x[(i + 1) % 3]
        return np.sum(z)
    check_grads(h, (np.array([1.0, 2.0, 3.0]),), order=2)


def test_eager_control_flow():
    def newton_sqrt(a):
        x = a
        while np.abs(x * x - a) > 1e-12:
            x = 0.5 * (x + a / x)
        return x if a > 0 else -x
    assert cr.grad(newton_sqrt)(4.0) == pytest.approx(0.25)


def test_where_has_no_nan_from_the_branch_not_taken():
    g = cr.grad(lambda x: np.sum(np.where(x > 0, np.sqrt(x), 0.0)))(np.array([0.0, 4.0, -1.0]))
    np.testing.assert_array_equal(g, [0.0, 0.25, 0.0])
    assert cr.jvp(lambda x: np.where(x > 0, np.sqrt(x), 0.0), (0.0,), (1.0,))[1] == 0.0


def test_nonsmooth_conventions():
    assert cr.grad(np.abs)(0.0) == 0.0
    assert cr.grad(lambda x: np.maximum(x, 0.0))(0.0) == 0.5
    assert cr.grad(lambda x: np.linalg.norm(x))(np.zeros(3)).tolist() == [0, 0, 0]
    np.testing.assert_allclose(cr.grad(lambda x: np.max(x))(np.array([1.0, 3.0, 3.0])),
                               [0, 0.5, 0.5])


def test_stop_gradient():
    assert cr.grad(lambda x: x * cr.stop_gradient(x))(3.0) == 3.0


def test_graph_printer_golden():
    def loss(w, x):
        return np.sum(np.tanh(x @ w) ** 2)
    text = str(cr.make_graph(loss)(np.ones(3), np.ones((2, 3))))
    assert text == """{ lambda w:f64[3] x:f64[2,3] .
  a:f64[2] = contract[spec=('ij', 'j', 'i')] x w
  b:f64[2] = tanh a
  c:f64[2] = square b
  d:f64[] = reduce_sum[axes=(0,)] c
  return d }"""
    cr.make_graph(loss)(np.ones(3), np.ones((2, 3))).verify()


# --------------------------------------------------------------------------- errors

def test_error_grad_of_integer_input():
    with pytest.raises(cr.NonDifferentiableError, match="dtype int64.*floating-point"):
        cr.grad(lambda x: x * 2.0)(3)


def test_error_grad_of_non_scalar_output():
    with pytest.raises(cr.ShapeError, match=r"scalar output.*\(3,\).*jacrev"):
        cr.grad(lambda x: x * 2)(np.ones(3))


def test_error_unsupported_numpy_function_is_named():
    with pytest.raises(cr.UnsupportedOperationError, match="np.fft.fft.*custom_vjp"):
        cr.grad(lambda x: np.abs(np.fft.fft(x)).sum())(np.ones(4))


def test_error_array_of_tracers_suggests_stack():
    with pytest.raises(cr.TracerConversionError, match="np.stack"):
        cr.grad(lambda x: np.array([x, x]).sum())(1.0)


def test_error_float_of_tracer():
    with pytest.raises(cr.TracerConversionError, match="float\\(\\).*drop its derivative"):
        cr.grad(lambda x: float(x) * x)(1.0)


def test_error_shape_mismatch_in_jvp():
    with pytest.raises(cr.ShapeError, match=r"tangent of shape \(2,\) for a primal of shape \(3,\)"):
        cr.jvp(np.sin, (np.ones(3),), (np.ones(2),))


def test_error_broadcast_mismatch():
    with pytest.raises(cr.ShapeError, match="cannot be broadcast"):
        cr.grad(lambda x: np.sum(x + np.ones(4)))(np.ones(3))
