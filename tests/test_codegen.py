"""Code generation: the Python written for contractions and literals, buffer reuse and
release that never touch the caller's arrays, constants, and primitives without an
emitter."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chainrule as cr
from chainrule.codegen import generate
from chainrule.codegen.python import name_user_variables
from chainrule.core.ir import Aval
from chainrule.core.trace import new_trace
from chainrule.transforms.simplify import simplify
from test_simplify import random_program

rng = np.random.default_rng(5)


def module_of(fn, *args, release_bytes=0):
    with new_trace(abstract=True, record_source=True) as trace:
        ins = [trace.new_input(Aval(np.shape(a), np.asarray(a).dtype)) for a in args]
        graph = trace.graph([t._var for t in ins], [fn(*ins)])
    name_user_variables(graph)
    return generate(simplify(graph), "fn", release_bytes=release_bytes)


def run(module, *args):
    return module.load()(*args)[0]


@pytest.mark.parametrize("spec, shapes, written", [
    ("ij,jk->ik", [(2, 3), (3, 4)], "a @ b"),
    ("ji,jk->ik", [(3, 2), (3, 4)], "a.T @ b"),
    ("ij,kj->ik", [(2, 3), (4, 3)], "a @ b.T"),
    ("ij,j->i", [(2, 3), (3,)], "a @ b"),
    ("j,jk->k", [(3,), (3, 4)], "a @ b"),
    ("j,j->", [(3,), (3,)], "a @ b"),
    ("i,j->ij", [(2,), (3,)], "np.multiply.outer(a, b)"),
    ("bij,bjk->bik", [(2, 2, 3), (2, 3, 4)], "np.einsum('bij,bjk->bik', a, b)"),
    ("ij,ij->", [(2, 3), (2, 3)], "np.einsum('ij,ij->', a, b)"),
])
def test_contractions_are_written_as_matrix_products_where_they_can(spec, shapes, written):
    a, b = (rng.standard_normal(s) for s in shapes)
    module = module_of(lambda a, b: np.einsum(spec, a, b), a, b)
    assert f"= {written}\n" in module.source.replace("x0", "a").replace("x1", "b")
    np.testing.assert_allclose(run(module, a, b), np.einsum(spec, a, b), rtol=1e-13)


def test_literals_keep_numpy_promotion():
    x = np.ones(3, np.float32)
    weak = cr.jit(lambda x: x * 2.0)
    strong = cr.jit(lambda x: x * np.float64(2.0))
    assert weak(x).dtype == np.float32 and strong(x).dtype == np.float64
    assert "x * 2.0" in cr.source(lambda x: x * 2.0, x)
    assert "x * np.float64(2.0)" in cr.source(lambda x: x * np.float64(2.0), x)
    assert "x * 0.1" in cr.source(lambda x: x * 0.1, x)      # float32(0.1), shortest form
    tenth = lambda x: x * np.float32(0.1)                    # float64 x: the value matters
    assert "x * np.float32(0.1)" in cr.source(tenth, np.ones(3))
    np.testing.assert_array_equal(cr.jit(tenth)(np.ones(3)), tenth(np.ones(3)))


def test_non_finite_and_negative_literals():
    f = lambda x: np.where(x > 0, x, -np.inf) + np.maximum(x, np.nan) * 0 - (-1.5) ** x
    x = np.array([1.0, -1.0, 2.0])
    text = cr.source(f, x)
    assert "-np.inf" in text and "np.nan" in text and "(-1.5) ** x" in text
    np.testing.assert_array_equal(cr.jit(f)(x), cr.vjp(f, x)[0])


def test_buffers_are_reused_but_never_the_callers():
    def f(x):
        s = np.sin(x)
        view = s.reshape(-1)           # s is viewed later: not overwritten by tanh
        t = np.tanh(s)
        u = np.exp(t)                  # t is dead: exp writes into it
        return u + view[::-1].reshape(x.shape) + x
    x = rng.standard_normal((4, 5))
    before = x.copy()
    module = module_of(f, x)
    assert "np.exp(t, out=t)" in module.source
    assert "out=s" not in module.source and "out=x" not in module.source
    np.testing.assert_allclose(run(module, x), f(x), rtol=1e-14)
    np.testing.assert_array_equal(x, before)


def test_dead_buffers_are_deleted_only_when_large():
    f = lambda x: np.sum(np.exp(np.sin(x)) * 2.0)
    x = rng.standard_normal(100)
    assert "del " in module_of(f, x, release_bytes=0).source
    assert "del " not in module_of(f, x, release_bytes=1 << 16).source
    big = rng.standard_normal(20000)
    text = cr.source(cr.grad(f), big)
    assert "del " in text and "out=" in text
    np.testing.assert_allclose(cr.jit(cr.grad(f))(big), cr.grad(f)(big), rtol=1e-12)


def test_in_place_update_writes_into_a_dead_buffer_only():
    def f(x):
        y = x * 2.0
        old = y * 1.0                  # simplified to y itself
        y[0] = 5.0                     # old is used below: y is copied before the write
        z = x + 1.0
        z[1:] = y[:-1]                 # z is dead afterwards: written in place
        return z + y + old
    x = rng.standard_normal(6)
    before = x.copy()
    module = module_of(f, x)
    assert module.source.count(".copy()") == 1
    np.testing.assert_allclose(run(module, x), cr.vjp(f, x)[0], rtol=1e-14)
    np.testing.assert_array_equal(x, before)


def test_constants_inline_when_small_and_from_consts_when_large():
    small, large = np.arange(3.0), rng.standard_normal(40)
    text = cr.source(lambda x: x * small + np.sum(large * x[0]), np.ones(3))
    assert "np.array([0.0, 1.0, 2.0], np.float64)" in text
    assert "= consts[0]  # float64[40]" in text


def test_primitive_without_emitter_calls_its_implementation():
    from chainrule.core.primitive import primitive
    soft = primitive("test_softplus_without_emitter", lambda x: np.log1p(np.exp(x)),
                     lambda x: x, jvp=lambda p, t, o: [t[0] / (1 + np.exp(-p[0]))])
    x = rng.standard_normal(4)
    text = cr.source(lambda x: soft.bind(x) * 2, x)
    assert "impl_test_softplus_without_emitter" in text
    np.testing.assert_allclose(cr.jit(lambda x: soft.bind(x))(x), np.log1p(np.exp(x)),
                               rtol=1e-14)
    np.testing.assert_allclose(cr.jit(cr.grad(lambda x: np.sum(soft.bind(x))))(x),
                               1 / (1 + np.exp(-x)), rtol=1e-14)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.data())
def test_random_programs_with_every_buffer_reused_or_released(data):
    """release_bytes=0: out= and del wherever allowed; values equal, inputs untouched."""
    program = random_program(data.draw)
    vg = cr.value_and_grad(lambda x, y: np.sum(program(x, y) ** 2), argnums=(0, 1))
    x, y = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    saved = x.copy(), y.copy()
    for fn in (program, lambda x, y: vg(x, y)[1][0]):
        got = run(module_of(fn, x, y), x, y)
        np.testing.assert_allclose(got, fn(x, y), rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(x, saved[0])
        np.testing.assert_array_equal(y, saved[1])
