"""Cross-country elimination on random programs (hypothesis): any order gives the
Jacobian of forward mode, and the exact search is never beaten by another order."""
import random as random_module

import numpy as np
from hypothesis import example, given, settings, strategies as st

import chainrule as cr
from chainrule.elimination import order_cost, plan

UNARY = [np.sin, np.tanh, lambda v: np.exp(0.3 * v)]
BINARY = [np.add, np.subtract, np.multiply]


@st.composite
def programs(draw):
    n_in = draw(st.integers(2, 3))
    steps = []
    for k in range(draw(st.integers(3, 9))):
        n_avail = n_in + k
        if draw(st.booleans()):
            steps.append(("u", draw(st.integers(0, len(UNARY) - 1)),
                          draw(st.integers(0, n_avail - 1))))
        else:
            steps.append(("b", draw(st.integers(0, len(BINARY) - 1)),
                          draw(st.integers(0, n_avail - 1)),
                          draw(st.integers(0, n_avail - 1))))
    n_out = draw(st.integers(1, 2))
    return n_in, steps, n_out


def build(program):
    n_in, steps, n_out = program

    def f(*xs):
        vals = list(xs)
        for step in steps:
            if step[0] == "u":
                vals.append(UNARY[step[1]](vals[step[2]]))
            else:
                vals.append(BINARY[step[1]](vals[step[2]], vals[step[3]]))
        return tuple(vals[-n_out:])
    return f


@settings(max_examples=25, deadline=None)
@given(programs(), st.randoms(use_true_random=False), st.booleans())
# Found by this test: two unit partials of `add b b` merge into a scalar diagonal,
# which the generated code once reshaped to a column without broadcasting it.
@example(program=(2, [("u", 0, 0), ("b", 0, 0, 1), ("u", 0, 0), ("u", 0, 0),
                      ("b", 0, 0, 0), ("b", 0, 3, 3)], 2),
         random=random_module.Random(0), vector_first=True)
def test_every_order_gives_the_forward_mode_jacobian(program, random, vector_first):
    f = build(program)
    rng = np.random.default_rng(0)
    # The first input is a vector and the others scalars (broadcast edges), or all scalars.
    args = [rng.standard_normal(3) if (i == 0 and vector_first) else
            np.float64(rng.standard_normal()) for i in range(program[0])]
    base = plan(f, *args, order="forward")
    order = base.lin.topology.eliminable()
    random.shuffle(order)
    p = plan(f, *args, order=order)
    J = p.jacobian(*args)
    want = cr.jacfwd(f, argnums=tuple(range(len(args))))(*args)
    for row, want_row in zip(J, want):
        for got, w in zip(row, want_row):
            np.testing.assert_allclose(got, w, rtol=1e-10, atol=1e-12)
    if len(order) <= 8:
        best = plan(f, *args, order="exact")
        assert best.cost <= order_cost(p.lin.topology, order)
