"""Cross-country elimination: Jacobians computed by the generated code of an order,
against chainrule's forward and reverse mode, finite differences and closed forms."""
import numpy as np
import pytest

import chainrule as cr
from benchmarks.elimination import tasks as T
from chainrule.core.errors import (ChainruleError, NonDifferentiableError, ShapeError)
from chainrule.core.primitive import primitive
from chainrule.elimination import load_order, plan
from chainrule.test_util import check_grads, numerical_jvp

rng = np.random.default_rng(7)


def _flat(jac):
    return [np.asarray(b) for row in jac for b in row]


def _assert_same(got, want, equal_nan=False):
    for g, w in zip(_flat(got), _flat(want)):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10, equal_nan=equal_nan)


@pytest.mark.parametrize("name", ["RoeFlux_1d", "RobotArm_6DOF", "HumanHeartDipole",
                                  "PropaneCombustion"])
@pytest.mark.parametrize("order", ["forward", "reverse", "markowitz", "greedy"])
def test_task_jacobians_match_forward_and_reverse_mode(name, order):
    task = T.TASKS[name]
    args = task.args(rng)
    J = plan(task.fun, *args, order=order).jacobian(*args)
    nums = tuple(range(len(args)))
    _assert_same(J, cr.jacfwd(task.fun, argnums=nums)(*args))
    _assert_same(J, cr.jacrev(task.fun, argnums=nums)(*args))


def test_task_g_matches_forward_mode_where_it_is_defined():
    task = T.TASKS["g"]
    args = task.args(rng)
    with np.errstate(all="ignore"):
        J = plan(task.fun, *args, order="markowitz").jacobian(*args)
        want = cr.jacfwd(task.fun, argnums=tuple(range(15)))(*args)
    got, want = np.array(_flat(J)), np.array(_flat(want))
    finite = np.isfinite(want)
    assert finite.mean() > 0.8
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-9, atol=1e-12)


def test_task_functions_differentiate_correctly():
    for name in ["RoeFlux_1d", "HumanHeartDipole"]:
        task = T.TASKS[name]
        check_grads(task.fun, task.args(rng), order=1)


def test_jacobian_agrees_with_finite_differences():
    task = T.TASKS["RobotArm_6DOF"]
    args = task.args(rng)
    J = plan(task.fun, *args, order="markowitz").jacobian(*args)
    v = tuple(rng.standard_normal(np.shape(a)) for a in args)
    fd = numerical_jvp(task.fun, args, v, 1e-6)
    for o, row in enumerate(J):
        np.testing.assert_allclose(sum(b * vi for b, vi in zip(row, v)), fd[o], rtol=1e-5,
                                   atol=1e-5)


def test_batched_scalar_program_is_vectorized():
    task = T.TASKS["PropaneCombustion"]
    p = plan(task.fun, *task.args(rng), order="reverse")
    batch = task.args(rng, (5, 2))
    J = p.jacobian(*batch)
    assert np.shape(J[3][2]) == (5, 2)
    for b in [(0, 0), (4, 1)]:
        one = cr.jacfwd(task.fun, argnums=tuple(range(11)))(*[x[b] for x in batch])
        _assert_same([[blk[b] for blk in row] for row in J], one)


W = rng.standard_normal((3, 4))


def tensor_program(x, A):
    """Contractions, broadcasting, reductions, indexing, reshapes and a transpose."""
    h = np.tanh(W @ x + 0.5)
    y = A @ h
    z = np.sum(y ** 2) * h[:2]
    return y.reshape(1, 2) * 2.0, z + x[1:3], np.exp(A).T


@pytest.mark.parametrize("order", ["forward", "reverse", "markowitz", "exact", "anneal"])
def test_tensor_program_in_every_order(order):
    x, A = rng.standard_normal(4), rng.standard_normal((2, 3))
    p = plan(tensor_program, x, A, order=order, budget_s=0.3 if order == "anneal" else 60)
    J = p.jacobian(x, A)
    _assert_same(J, cr.jacfwd(tensor_program, argnums=(0, 1))(x, A))
    _assert_same(J, cr.jacrev(tensor_program, argnums=(0, 1))(x, A))
    assert J[2][1].shape == (3, 2, 2, 3)
    assert p.cost <= p.costs["forward"] or order in ("forward", "reverse", "markowitz")


def test_tensor_program_with_a_batch_axis():
    x, A = rng.standard_normal((3, 4)), rng.standard_normal((3, 2, 3))
    p = plan(tensor_program, x[0], A[0], order="markowitz")
    J = p.jacobian(x, A)
    assert J[1][0].shape == (3, 2, 4)
    for b in range(3):
        want = cr.jacfwd(tensor_program, argnums=(0, 1))(x[b], A[b])
        _assert_same([[blk[b] for blk in row] for row in J], want)


def test_elementwise_closed_form():
    f = lambda x: np.sin(x) * x
    x = rng.standard_normal(5)
    J = cr.jacobian(f, mode="cross_country", order="reverse")(x)
    np.testing.assert_allclose(J, np.diag(np.cos(x) * x + np.sin(x)), rtol=1e-13)


def test_dense_vertex_from_a_primitive_without_structure():
    """np.linalg.solve becomes one vertex with dense blocks (probed from its JVP)."""
    def f(A, b):
        return np.linalg.solve(A, np.sin(b))
    A = rng.standard_normal((3, 3)) + 3 * np.eye(3)
    b = rng.standard_normal(3)
    J_A, J_b = plan(f, A, b, order="markowitz").jacobian(A, b)
    want_A, want_b = cr.jacfwd(f, argnums=(0, 1))(A, b)
    assert J_A.shape == (3, 3, 3)
    np.testing.assert_allclose(J_A, want_A, rtol=1e-12)
    # closed form: d/db solve(A, sin b) = A^-1 diag(cos b)
    np.testing.assert_allclose(J_b, np.linalg.solve(A, np.diag(np.cos(b))), rtol=1e-12)
    np.testing.assert_allclose(J_b, want_b, rtol=1e-12)


def test_block_of_an_operation_that_rejects_random_points_is_dense():
    """Cholesky of a random matrix fails; its block is then charged as dense."""
    def f(A):
        return np.linalg.cholesky(A @ A.T + 3 * np.eye(3))
    A = rng.standard_normal((3, 3))
    p = plan(f, A, order="markowitz")
    (J,) = p.jacobian(A)
    np.testing.assert_allclose(J, cr.jacfwd(f)(A), rtol=1e-10, atol=1e-12)
    chol = p.lin.topology.n_inputs + p.n_vertices - 1      # the last vertex
    (block,) = [s for (i, k), s in p.lin.topology.edges.items() if k == chol]
    assert block.kind == "dense"


def test_public_face_jacobian_cross_country():
    f = lambda p: {"u": np.sin(p["a"]) * p["b"], "v": p["a"] ** 2}
    p = {"a": rng.standard_normal(3), "b": rng.standard_normal(3)}
    jac = cr.jacobian(f, mode="cross_country")
    J, want = jac(p), cr.jacfwd(f)(p)
    for out in "uv":
        for inp in "ab":
            np.testing.assert_allclose(J[out][inp], want[out][inp], rtol=1e-12)
    J2 = cr.jacobian(lambda x, y: x * y, argnums=1, mode="cross_country",
                     order="markowitz")(2.0 * np.ones(2), np.ones(2))
    np.testing.assert_allclose(J2, 2.0 * np.eye(2))


def test_report_names_every_order_and_its_cost():
    task = T.TASKS["HumanHeartDipole"]
    p = plan(task.fun, *task.args(rng), order="markowitz")
    text = p.report()
    for line in ["forward", "240", "reverse", "172", "markowitz", "194", "86 vertices"]:
        assert line in text


def test_save_and_load_round_trip(tmp_path):
    task = T.TASKS["PropaneCombustion"]
    args = task.args(rng)
    p = plan(task.fun, *args, search="beam")
    p.save(tmp_path / "o.json")
    q = plan(task.fun, *args, order=load_order(tmp_path / "o.json"))
    assert q.order == p.order and q.cost == p.cost


def test_common_subexpression_elimination_is_an_option():
    task = T.TASKS["RoeFlux_1d"]
    args = task.args(rng)
    plain = plan(task.fun, *args, order="markowitz")
    merged = plan(task.fun, *args, order="markowitz", cse=True)
    assert merged.n_vertices < plain.n_vertices == 101
    _assert_same(merged.jacobian(*args), plain.jacobian(*args))


# --------------------------------------------------------------------------- errors

def test_error_integer_input():
    with pytest.raises(NonDifferentiableError, match="floating-point inputs"):
        plan(lambda x: x * 2, np.arange(3))


def test_error_unknown_order_and_model():
    with pytest.raises(ChainruleError, match="unknown order 'sideways'"):
        plan(np.sin, np.ones(2), order="sideways")
    with pytest.raises(ChainruleError, match="unknown cost model"):
        plan(np.sin, np.ones(2), order="forward", model="flops")


def test_error_saved_order_for_another_graph(tmp_path):
    p = plan(lambda x: np.sin(np.cos(x)), np.ones(2), order="forward")
    p.save(tmp_path / "o.json")
    with pytest.raises(ChainruleError, match="saved for another function"):
        plan(lambda x: np.sin(x), np.ones(2), order=load_order(tmp_path / "o.json"))
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ChainruleError, match="not a saved elimination order"):
        load_order(tmp_path / "bad.json")


def test_error_wrong_shapes_at_run_time():
    p = plan(lambda x, y: x * y, np.ones(2), np.ones(2), order="forward")
    with pytest.raises(ShapeError, match="only leading batch axes"):
        p.jacobian(np.ones(3), np.ones(2))
    with pytest.raises(ShapeError, match="same batch axes"):
        p.jacobian(np.ones((4, 2)), np.ones((5, 2)))


def test_error_primitive_without_derivative_rule():
    opaque = primitive("opaque_for_elimination_test", lambda x: x + 1, lambda x: x)
    with pytest.raises(NonDifferentiableError, match="opaque_for_elimination_test"):
        plan(lambda x: np.sin(opaque.bind(x)), np.ones(2), order="forward")


def test_error_exact_search_on_a_large_graph():
    task = T.TASKS["RoeFlux_1d"]
    with pytest.raises(ChainruleError, match="exact search is limited"):
        plan(task.fun, *task.args(rng), order="exact")


def test_error_exact_search_out_of_time():
    x, A = rng.standard_normal(4), rng.standard_normal((2, 3))
    with pytest.raises(ChainruleError, match="did not finish within 0.0 s"):
        plan(tensor_program, x, A, order="exact", budget_s=0.0)


def test_search_never_returns_worse_than_the_classical_orders(capsys):
    task = T.TASKS["HumanHeartDipole"]
    p = plan(task.fun, *task.args(rng), search="auto", budget_s=0.5, progress=True)
    assert p.cost <= min(p.costs.values())
    assert "best" in capsys.readouterr().err          # the progress bar
    again = plan(task.fun, *task.args(rng), search="anneal", budget_s=0.5, seed=3)
    assert again.cost <= min(again.costs.values())


def test_public_face_plans_once_per_signature():
    calls = []

    def f(x):
        calls.append(1)
        return np.sin(x) * x

    jac = cr.jacobian(f, mode="cross_country", order="markowitz")
    x = rng.standard_normal(3)
    np.testing.assert_allclose(jac(x), np.diag(np.cos(x) * x + np.sin(x)), rtol=1e-13)
    traced = len(calls)
    np.testing.assert_allclose(jac(2 * x), np.diag(np.cos(2 * x) * 2 * x + np.sin(2 * x)),
                               rtol=1e-13)
    assert len(calls) == traced                    # the generated code ran, no tracing
    jac(np.ones(4))
    assert len(calls) > traced                     # a new shape is a new plan


def test_error_block_too_large_to_form(monkeypatch):
    from chainrule.core.errors import UnsupportedOperationError
    from chainrule.elimination import graph

    monkeypatch.setattr(graph, "MAX_PROBED_BLOCK", 10)
    A = rng.standard_normal((4, 4)) + 4 * np.eye(4)
    with pytest.raises(UnsupportedOperationError, match="too large to form.*jacfwd"):
        plan(lambda A: np.linalg.solve(A, np.ones(4)), A, order="forward")


def test_large_batches_run_in_slices_with_the_same_result():
    task = T.TASKS["HumanHeartDipole"]
    p = plan(task.fun, *task.args(rng), order="markowitz")
    batch = task.args(rng, (3, 7))
    whole = p.blocks(*batch)
    p.chunk = 4                                   # 21 elements in 6 slices
    sliced = p.blocks(*batch)
    for a, b in zip(_flat(whole), _flat(sliced)):
        assert b.shape == (3, 7)
        np.testing.assert_array_equal(a, b)


def test_large_batches_of_a_tensor_program_run_in_slices_with_the_same_result():
    x, A = rng.standard_normal((5, 4)), rng.standard_normal((5, 2, 3))
    p = plan(tensor_program, x[0], A[0], order="reverse")
    whole = p.blocks(x, A)
    p.tensor_chunk = 2                            # 5 elements in 3 slices, the last of one
    sliced = p.blocks(x, A)
    for a, b in zip(_flat(whole), _flat(sliced)):
        assert b.shape[0] == 5
        np.testing.assert_allclose(a, b, rtol=1e-13)


@pytest.mark.parametrize("name", ["MLP", "TransformerEncoder"])
def test_tensor_task_jacobians_match_forward_and_reverse_mode(name):
    from benchmarks.elimination.search_orders import order_path

    task = T.TASKS[name]
    args = task.args(rng)
    rows = (lambda jac: [jac]) if name == "MLP" else (lambda jac: jac)   # MLP: one output
    J = plan(task.fun, *args, order=load_order(order_path(name))).jacobian(*args)
    nums = tuple(range(len(args)))
    _assert_same(rows(J), rows(cr.jacfwd(task.fun, argnums=nums)(*args)))
    _assert_same(rows(J), rows(cr.jacrev(task.fun, argnums=nums)(*args)))


def _black_scholes(S, K, r, sigma, T_):
    F = np.exp(r * T_) * S
    d1 = (np.log(F / K) + sigma ** 2 / 2.0 * T_) / (sigma * np.sqrt(T_))
    d2 = d1 - sigma * np.sqrt(T_)
    return np.exp(-r * T_) * (F * T._phi_cdf(d1) - K * T._phi_cdf(d2))


def test_black_scholes_task_is_the_gradient_and_its_jacobian_the_hessian():
    task = T.TASKS["BlackScholes_Jacobian"]
    args = task.args(rng)
    nums = tuple(range(5))
    np.testing.assert_allclose(task.fun(*args), cr.grad(_black_scholes, argnums=nums)(*args),
                               rtol=1e-12)
    J = plan(task.fun, *args, order="markowitz").jacobian(*args)
    np.testing.assert_allclose(np.array(J, float),
                               np.array(cr.hessian(_black_scholes, argnums=nums)(*args), float),
                               rtol=1e-9, atol=1e-12)
    check_grads(task.fun, args, order=2)


def test_erf_partial_of_a_batched_scalar_program_broadcasts():
    task = T.TASKS["BlackScholes_Jacobian"]
    p = plan(task.fun, *task.args(rng), order="reverse")
    batch = task.args(rng, (6,))
    J = p.blocks(*batch)
    for b in range(6):
        one = p.blocks(*[x[b] for x in batch])
        for got, want in zip(_flat(J), _flat(one)):
            np.testing.assert_allclose(got[b], want, rtol=1e-13)


def test_primitive_implemented_by_a_ufunc_outside_numpy():
    """scipy.special.erf is a primitive implemented by SciPy's ufunc: the generated code
    calls that object (there is no np.erf)."""
    import scipy.special
    from chainrule.core.primitive import impl_rules
    from chainrule.ops.elementwise import prims

    f = lambda x: scipy.special.erf(x * 2.0) * x
    x = np.array([0.3, -0.7])
    (J,) = plan(f, x, order="reverse").jacobian(x)
    want = np.diag(2 * (2 / np.sqrt(np.pi)) * np.exp(-4 * x * x) * x
                   + scipy.special.erf(2 * x))                  # product rule, by hand
    np.testing.assert_allclose(J, want, rtol=1e-13)
    assert impl_rules[prims["erf"]] is scipy.special.erf


def test_transformer_encoder_differentiates_correctly():
    task = T.TASKS["TransformerEncoder"]
    check_grads(lambda *a: np.sum(task.fun(*a)), task.args(rng), order=2)


def test_loop_primitive_is_one_vertex_with_a_dense_block():
    from chainrule.control import fori_loop

    def f(x):
        y = fori_loop(0, 3, lambda i, c: np.sin(c) * 1.5, x)
        return np.exp(y) * x

    x = np.array([0.3, 0.7])
    p = plan(f, x, order="markowitz")
    assert p.n_vertices == 3                       # loop, exp, multiply
    (J,) = p.jacobian(x)
    np.testing.assert_allclose(J, cr.jacfwd(f)(x), rtol=1e-12)
    np.testing.assert_allclose(J, cr.jacrev(f)(x), rtol=1e-12)


def test_batched_tensor_program_falls_back_to_one_run_per_element(monkeypatch):
    from chainrule.core.errors import UnsupportedOperationError
    from chainrule.transforms import batching

    def no_vmap(fn):
        def fail(*args):
            raise UnsupportedOperationError("no batching rule (test)")
        return fail

    x, A = rng.standard_normal((2, 4)), rng.standard_normal((2, 2, 3))
    p = plan(tensor_program, x[0], A[0], order="reverse")
    vectorized = p.jacobian(x, A)
    monkeypatch.setattr(batching, "vmap", no_vmap)
    looped = p.jacobian(x, A)
    for a, b in zip(_flat(vectorized), _flat(looped)):
        np.testing.assert_allclose(a, b, rtol=1e-13)


def test_batch_of_one_on_a_tensor_program():
    x, A = rng.standard_normal((1, 4)), rng.standard_normal((1, 2, 3))
    p = plan(tensor_program, x[0], A[0], order="reverse")
    J = p.jacobian(x, A)
    want = cr.jacfwd(tensor_program, argnums=(0, 1))(x[0], A[0])
    _assert_same([[blk[0] for blk in row] for row in J], want)
    assert J[2][1].shape == (1, 3, 2, 2, 3)
