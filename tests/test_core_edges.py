"""Edge cases of tracing: leaks, dtypes, constants, unused inputs, verification."""
import numpy as np
import pytest

import chainrule as cr
from chainrule.core.ir import Aval, GraphError
from chainrule.core.trace import trace_flat
from chainrule.test_util import check_grads


def test_leaked_tracer_is_reported():
    leaked = []
    cr.grad(lambda x: leaked.append(x) or x * 2.0)(1.0)
    with pytest.raises(cr.ChainruleError, match="escaped"):
        cr.grad(lambda y: y * leaked[0])(1.0)


def test_float32_is_preserved_through_grad():
    x = np.ones(3, np.float32)
    g = cr.grad(lambda x: np.sum(np.sin(x) * 2.0))(x)
    assert g.dtype == np.float32


def test_unused_input_and_constant_output_give_exact_zeros():
    g = cr.grad(lambda x, y: np.sum(x ** 2), argnums=(0, 1))(np.ones(2), np.ones(3))
    np.testing.assert_array_equal(g[1], np.zeros(3))
    assert cr.grad(lambda x: 3.0)(2.0) == 0.0
    np.testing.assert_array_equal(cr.jacfwd(lambda x: np.ones(2))(np.ones(3)), np.zeros((2, 3)))


def test_has_aux():
    (value, aux), g = cr.value_and_grad(lambda x: (x ** 2, {"x3": x ** 3}), has_aux=True)(2.0)
    assert value == 4.0 and aux["x3"] == 8.0 and g == 4.0


def test_abstract_tracing_and_verifier():
    graph, _, _ = trace_flat(lambda x: [np.tanh(x @ x.T).sum(axis=0)],
                             [Aval((3, 4), np.float64)], abstract=True)
    graph.verify()
    assert graph.outvars[0].aval == Aval((3,), np.float64)
    graph.eqns[1].outputs[0].aval = Aval((2,), np.float64)
    with pytest.raises(GraphError, match="shape rule"):
        graph.verify()


def test_value_dependent_control_flow_without_values_is_a_clear_error():
    def f(x):
        return x if x.sum() > 0 else -x
    with pytest.raises(cr.ConcretizationError, match="while_loop"):
        trace_flat(lambda x: [f(x)], [Aval((3,), np.float64)], abstract=True)


def test_methods_and_attributes_of_tracers():
    def f(x):
        assert x.shape == (2, 3) and x.ndim == 2 and x.size == 6 and len(x) == 2
        return (x.T @ x).sum(axis=0).reshape(3, 1).mean() + x.ravel().max() + x.std()
    from chainrule.test_util import check_grads
    check_grads(f, (np.arange(6.0).reshape(2, 3) / 7 + 0.1,), order=2)


def test_ufunc_methods_dispatch():
    from chainrule.test_util import check_grads
    x = np.random.default_rng(3).random((3, 4))
    check_grads(lambda x: np.logaddexp.reduce(x, axis=1), (x,), order=2)
    check_grads(lambda x: np.add.outer(x[0], x[1]) * np.multiply.accumulate(x[2])[0],
                (x,), order=2)
    np.testing.assert_allclose(cr.grad(lambda x: np.add.reduce(x * x))(np.arange(3.0)),
                               [0.0, 2.0, 4.0])
    with pytest.raises(cr.UnsupportedOperationError, match="np.subtract.accumulate"):
        cr.grad(lambda x: np.subtract.accumulate(x).sum())(np.ones(3))


def test_out_argument_of_numpy_functions_is_refused():
    buf = np.zeros(())
    with pytest.raises(cr.TracerConversionError, match="out=.*returned array"):
        cr.grad(lambda x: np.sum(x, out=buf))(np.ones(3))


def test_copy_is_not_aliased_by_later_in_place_updates():
    def f(x):
        y = x * 2.0
        old = y.copy()
        y[0] = 5.0
        return y + old + np.copy(y)
    x = np.arange(3.0)
    np.testing.assert_allclose(cr.vjp(f, x)[0], f(x))
    np.testing.assert_allclose(cr.grad(lambda x: np.sum(f(x)))(x), [2.0, 6.0, 6.0])


def test_printed_slices_keep_their_colons():
    text = str(cr.make_graph(lambda x: np.sum(x[1:]) + np.sum(x[:-1]) + np.sum(x[::2]))(np.ones(4)))
    assert "index=[1:]" in text and "index=[:-1]" in text and "index=[::2]" in text


def test_singular_solves_name_the_cause():
    with pytest.raises(cr.SingularMatrixError, match="rank-deficient.*tria"):
        cr.grad(lambda a: np.sum(np.linalg.qr(a.T)[1]))(np.array([[1.0, 0.0], [1.0, 0.0]]))
    with pytest.raises(np.linalg.LinAlgError):          # still what NumPy users catch
        cr.grad(lambda a: np.sum(np.linalg.inv(a)))(np.zeros((2, 2)))


def test_sub_graphs_print_indented_inside_their_equation():
    text = str(cr.make_graph(lambda x: cr.cond(x.sum() > 0, lambda x: x * 2, lambda x: -x, x))(
        np.ones(2)))
    assert "cond[branches=({ lambda a:f64[2] .\n        b:f64[2] = negative a" in text
    assert "{ {" not in text


@pytest.mark.parametrize("kwargs", [dict(axis=1), dict(axis=None), dict(axis=0, keepdims=True)])
@pytest.mark.parametrize("weighted", [False, True])
def test_average_returned_gives_the_sum_of_weights_too(kwargs, weighted):
    x = np.random.default_rng(5).standard_normal((3, 4))
    w = np.random.default_rng(6).uniform(0.5, 2.0, (3, 4)) if weighted else None
    f = lambda x: np.average(x, weights=w, returned=True, **kwargs)
    for got, want in zip(cr.jit(f)(x), f(x)):
        np.testing.assert_allclose(got, want, rtol=1e-14)
        assert np.shape(got) == np.shape(want)
    check_grads(lambda x: f(x)[0], (x,), order=2)
