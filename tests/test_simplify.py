"""Graph simplification: every rewrite preserves values (the graph is run before and
after on random inputs) and fires where it should."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chainrule as cr
from chainrule.core.ir import Aval
from chainrule.core.trace import eval_graph, trace_flat
from chainrule.transforms.simplify import (cse, dce, fold_constants, rewrite, simplify,
                                           simplify_strategy)

rng = np.random.default_rng(7)


def traced(fn, *shapes):
    graph, _, _ = trace_flat(lambda *a: cr.tree_flatten(fn(*a))[0],
                             [Aval(s, np.float64) for s in shapes], abstract=True)
    return graph


def prims(graph):
    return [e.prim.name for e in graph.eqns]


def assert_same_values(before, after, shapes):
    args = [rng.standard_normal(s) for s in shapes]
    want = eval_graph(before, before.consts, args)
    got = eval_graph(after, after.consts, args)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert np.shape(g) == np.shape(w) and np.asarray(g).dtype == np.asarray(w).dtype
        np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-15)


def simplified(fn, *shapes):
    """The simplified graph of fn, after checking it is valid and computes the same."""
    before = traced(fn, *shapes)
    after = simplify(before).verify()
    assert_same_values(before, after, shapes)
    return after


REWRITES = {
    # name: (function, input shapes, primitives left after simplification)
    "x*1": (lambda x: x * 1.0, [(3,)], []),
    "1*x broadcasts": (lambda x: np.ones((2, 3)) * x, [(3,)], ["broadcast_to"]),
    "x+0": (lambda x: x + 0.0, [(3,)], []),
    "0+x": (lambda x: 0.0 + x, [(3,)], []),
    "x-0": (lambda x: x - 0.0, [(3,)], []),
    "0-x": (lambda x: 0.0 - x, [(3,)], ["negative"]),
    "x/1": (lambda x: x / 1.0, [(3,)], []),
    "x**1": (lambda x: x ** 1.0, [(3,)], []),
    "x*0 stays": (lambda x: np.sin(x) * 0.0, [(3,)], ["sin", "multiply"]),
    "double negation": (lambda x: -(-x), [(3,)], []),
    "x + -y": (lambda x, y: x + (-y), [(3,), (3,)], ["subtract"]),
    "-x + y": (lambda x, y: (-x) + y, [(3,), (3,)], ["subtract"]),
    "x - -y": (lambda x, y: x - (-y), [(3,), (3,)], ["add"]),
    "x * -y": (lambda x, y: x * (-y), [(3,), (3,)], ["multiply", "negative"]),
    "c * -x": (lambda x: 2.0 * (-x), [(3,)], ["multiply"]),
    "-(c * x)": (lambda x: -(2.0 * x), [(3,)], ["multiply"]),
    "c * (d * x)": (lambda x: 2.0 * (3.0 * x), [(3,)], ["multiply"]),
    "transpose of transpose": (
        lambda x: np.transpose(np.transpose(x, (1, 2, 0)), (2, 0, 1)), [(2, 3, 4)], []),
    "transposes compose": (
        lambda x: np.transpose(np.transpose(x, (1, 2, 0)), (1, 0, 2)), [(2, 3, 4)],
        ["transpose"]),
    "reshape of reshape": (lambda x: x.reshape(6).reshape(3, 2), [(2, 3)], ["reshape"]),
    "reshape back": (lambda x: x.reshape(6).reshape(2, 3), [(2, 3)], []),
    "broadcast of broadcast": (
        lambda x: np.broadcast_to(np.broadcast_to(x, (2, 3)), (4, 2, 3)), [(3,)],
        ["broadcast_to"]),
    "broadcast of a scalar operand": (
        lambda s, x: np.broadcast_to(s, (3,)) * x, [(), (3,)], ["multiply"]),
    "broadcast operand": (
        lambda x, y: np.broadcast_to(x, (2, 3)) + y, [(3,), (2, 3)], ["add"]),
    "sum of a broadcast": (
        lambda x: np.sum(np.broadcast_to(x, (4, 3)), axis=0), [(3,)], ["multiply"]),
    "sum of a broadcast keeps other axes": (
        lambda x: np.sum(np.broadcast_to(x, (4, 2, 3)), axis=0), [(1, 3)],
        ["broadcast_to", "multiply"]),
    "sum of a broadcast over a kept size-1 axis": (
        lambda x: np.sum(np.broadcast_to(x, (2, 4, 3)), axis=1), [(2, 1, 3)],
        ["reshape", "multiply"]),
    "sum of ones": (lambda x: x + np.sum(np.ones(5)), [(3,)], ["add"]),
    "select on a constant": (lambda x, y: np.where(True, x, y), [(3,), (3,)], []),
    "stop_gradient": (lambda x: cr.stop_gradient(x) * 2.0, [(3,)], ["multiply"]),
    "transposed operand of a contraction": (lambda a, b: a.T @ b, [(3, 2), (3, 4)],
                                            ["contract"]),
    "(M * u) * v": (lambda m, u, v: (m * u) * v, [(3, 4), (4,), (4,)],
                    ["multiply", "multiply"]),
    "M * u + M * v": (lambda m, u, v: m * u + m * v, [(3, 4), (4,), (4,)],
                      ["add", "multiply"]),
    "identity contraction": (lambda a: np.eye(3) @ a.T, [(4, 3)], ["transpose"]),
    "identity contraction on the right": (lambda a: a @ np.eye(3), [(4, 3)], []),
    "diagonal contraction": (lambda u, a: (np.eye(3) * u) @ a, [(3,), (3, 4)],
                             ["reshape", "multiply"]),
    "diagonal contraction, transposed": (lambda u, a: a.T @ (u[:, None] * np.eye(3)),
                                         [(3,), (3, 4)],
                                         ["getitem", "reshape", "transpose", "multiply"]),
    "constant folding": (lambda x: x + np.sin(np.arange(3.0)), [(3,)], ["add"]),
    "cse": (lambda x: np.sin(x) + np.sin(x), [(3,)], ["sin", "add"]),
    "dce": (lambda x: (np.exp(x), np.cos(x))[1], [(3,)], ["cos"]),
}


@pytest.mark.parametrize("name", REWRITES)
def test_rewrite_preserves_values_and_fires(name):
    fn, shapes, left = REWRITES[name]
    assert sorted(prims(simplified(fn, *shapes))) == sorted(left)


def test_symbolic_zero_and_one_tangents_disappear():
    grad = cr.grad(lambda x, y: np.sum(np.sin(x) * 2.0) + 0.0 * np.sum(y), argnums=(0, 1))
    graph = simplified(lambda x, y: grad(x, y), (3,), (3,))
    assert sorted(prims(graph)) == ["cos", "multiply"]          # 2 * cos(x); zeros for y
    assert graph.outvars[1] in graph.constvars or "broadcast_to" in prims(graph)


def test_gradient_reuses_the_forward_pass():
    """cos(x) of the forward pass is not recomputed by the derivative of sin(x)*cos(x)."""
    vg = cr.value_and_grad(lambda x: np.sum(np.sin(x) * np.cos(x)))
    graph = simplified(lambda x: vg(x), (4,))
    assert prims(graph).count("cos") == 1 and prims(graph).count("sin") == 1


def test_mul_zero_safe_becomes_a_product_when_a_side_is_safe():
    grad = cr.grad(lambda x: np.sum(np.sqrt(x)))
    graph = simplified(lambda x: grad(x), (3,))
    assert "mul_zero_safe" not in prims(graph)
    x = np.array([1.0, 4.0, 9.0])
    np.testing.assert_allclose(eval_graph(graph, graph.consts, [x])[0], 0.5 / np.sqrt(x))


def test_the_strategy_is_explicit():
    assert simplify_strategy.__name__ == "repeat(fold_constants ; rewrite ; cse) ; dce"


def graph_with_constant_work():
    """y = x + sin(c) * 2.0, with c a constant: tracing never records such equations
    (NumPy computes them at once), derivative rules and rewrites do."""
    from chainrule.core.ir import Eqn, Graph, Literal, Var
    from chainrule.ops.elementwise import prims as p
    c, x = Var(Aval((3,), np.float64)), Var(Aval((3,), np.float64))
    s, t, y = (Var(Aval((3,), np.float64)) for _ in range(3))
    eqns = [Eqn(p["sin"], [c], [s], {}), Eqn(p["multiply"], [s, Literal(2.0)], [t], {}),
            Eqn(p["add"], [x, t], [y], {})]
    return Graph([c], [x], eqns, [y], [np.arange(3.0)]).verify()


def test_constant_folding():
    graph, changed = fold_constants(graph_with_constant_work())
    assert changed and prims(graph) == ["add"]
    assert_same_values(graph_with_constant_work(), graph, [(3,)])


@pytest.mark.parametrize("single_pass", [rewrite, cse, dce])
def test_each_pass_alone_preserves_values(single_pass):
    def fn(x, y):
        np.exp(y)                                          # dead
        return -(-(x * 1.0)) + np.cos(y) * y, np.sin(x) + np.sin(x)
    before = traced(fn, (3,), (3,))
    after, changed = single_pass(before)
    assert changed
    assert_same_values(before, after.verify(), [(3,), (3,)])
    assert single_pass(simplify(before))[1] is False


# --------------------------------------------------------------------------- random programs

UNARY = [np.negative, np.sin, np.tanh, lambda v: v.T.T, lambda v: v.reshape(6).reshape(2, 3)]
BINARY = [np.add, np.subtract, np.multiply]
CONSTANTS = [0.0, 1.0, -1.0, 2.0]


def random_program(draw):
    steps = draw(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10), st.integers(0, 10)),
                          min_size=1, max_size=8))

    def program(x, y):
        values = [x, y]
        for kind, i, j in steps:
            a, b = values[i % len(values)], values[j % len(values)]
            if kind == 0:
                values.append(UNARY[i % len(UNARY)](a))
            elif kind == 1:
                values.append(BINARY[j % len(BINARY)](a, b))
            elif kind == 2:
                c = CONSTANTS[j % len(CONSTANTS)]
                values.append(BINARY[i % len(BINARY)](a, c) if i % 2 else
                              BINARY[i % len(BINARY)](c, a))
            else:
                values.append(np.sum(np.broadcast_to(a, (2, 2, 3)), axis=i % 2) if i % 3
                              else a + np.zeros((2, 3)) * b)
        return values[-1]
    return program


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.data())
def test_random_programs_and_their_gradients_keep_their_values_also_under_jit(data):
    program = random_program(data.draw)
    simplified(program, (2, 3), (2, 3))
    vg = cr.value_and_grad(lambda x, y: np.sum(program(x, y) ** 2), argnums=(0, 1))
    simplified(lambda x, y: vg(x, y), (2, 3), (2, 3))
    x, y = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    for got, want in zip(cr.tree_flatten(cr.jit(vg)(x, y))[0], cr.tree_flatten(vg(x, y))[0]):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
