"""vmap: every primitive's batch rule against a Python loop over the batch (batch axis in
every position, unbatched operands), composition with the derivative transforms,
Jacobians and Hessians built on vmap against loops of jvp/vjp, and the errors."""
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.workloads import rosenbrock_hessian
import chainrule as cr
from chainrule.core.errors import ConcretizationError, ShapeError
from chainrule.core.ir import Aval
from chainrule import linalg
from chainrule.core.primitive import primitive
from chainrule.ops import elementwise, shape
from chainrule.test_util import check_grads
from chainrule.transforms.batching import vmap

B = 3
rng = np.random.default_rng(0)


def normal(*shape):
    return rng.standard_normal(shape)


def positive(*shape):
    return rng.uniform(0.2, 0.8, shape)


def spd(n):
    a = normal(n, n)
    return a @ a.T + n * np.eye(n)


def looped(fn, args, axes):
    """The reference: fn applied to each example, results stacked on axis 0."""
    size = next(np.shape(a)[d] for a, d in zip(args, axes) if d is not None)
    outs = [fn(*[a if d is None else np.take(a, i, axis=d) for a, d in zip(args, axes)])
            for i in range(size)]
    if isinstance(outs[0], tuple):
        return tuple(np.stack([np.asarray(o[k]) for o in outs]) for k in range(len(outs[0])))
    return np.stack([np.asarray(o) for o in outs])


def batched_examples(examples, axes):
    """Batched arguments: example k gets B fresh copies stacked at position axes[k]."""
    out = []
    for x, d in zip(examples, axes):
        if d is None:
            out.append(x)
        else:
            copies = [x] + [perturb(x) for _ in range(B - 1)]
            out.append(np.stack(copies, axis=d))
    return out


def perturb(x):
    x = np.asarray(x)
    if x.dtype == bool:
        return rng.random(x.shape) < 0.5
    if np.issubdtype(x.dtype, np.integer):
        return rng.permutation(x.ravel()).reshape(x.shape) if x.size else x
    return x * rng.uniform(0.9, 1.1, x.shape)


def axis_configurations(examples):
    """Each operand batched alone at every position, and all batched at mixed positions."""
    n = len(examples)
    configs = []
    for k, x in enumerate(examples):
        for d in range(np.ndim(x) + 1):
            configs.append(tuple(d if j == k else None for j in range(n)))
            if n > 1:
                configs.append(tuple(d if j == k else np.ndim(examples[j]) for j in range(n)))
    return configs


def assert_batches_like_loop(fn, examples):
    for axes in axis_configurations(examples):
        args = batched_examples(examples, axes)
        got = vmap(fn, in_axes=axes)(*args)
        want = looped(fn, args, axes)
        for g, w in zip(got if isinstance(got, tuple) else (got,),
                        want if isinstance(want, tuple) else (want,)):
            assert np.shape(g) == np.shape(w), (axes, np.shape(g), np.shape(w))
            np.testing.assert_allclose(np.asarray(g, float), np.asarray(w, float),
                                       rtol=1e-10, atol=1e-12, err_msg=str(axes))


# --------------------------------------------------------------------------- every primitive

UNARY_DOMAIN = {"arccosh": lambda: 1 + positive(4), "log": lambda: positive(4)}
UNARY_CASES = [(name, ufunc) for name, (ufunc, _) in elementwise.UNARY.items()]


@pytest.mark.parametrize("name,ufunc", UNARY_CASES, ids=[c[0] for c in UNARY_CASES])
def test_unary_elementwise(name, ufunc):
    x = UNARY_DOMAIN.get(name, lambda: positive(4))()
    assert_batches_like_loop(ufunc, [x])


BINARY_CASES = [(name, ufunc) for name, (ufunc, _, _) in elementwise.BINARY.items()]


@pytest.mark.parametrize("name,ufunc", BINARY_CASES, ids=[c[0] for c in BINARY_CASES])
def test_binary_elementwise_with_broadcasting(name, ufunc):
    assert_batches_like_loop(ufunc, [positive(2, 3) + 1, positive(3)])
    assert_batches_like_loop(ufunc, [positive(3), positive(2, 1) + 1])


@pytest.mark.parametrize("ufunc", elementwise.NONDIFFERENTIABLE,
                         ids=[u.__name__ for u in elementwise.NONDIFFERENTIABLE])
def test_nondifferentiable_elementwise(ufunc):
    if ufunc.nin == 1:
        x = rng.random(4) < 0.5 if ufunc in (np.logical_not, np.invert) else normal(4)
        assert_batches_like_loop(ufunc, [x])
    elif ufunc.__name__.startswith(("logical", "bitwise")):
        assert_batches_like_loop(ufunc, [rng.random((2, 3)) < 0.5, rng.random(3) < 0.5])
    else:
        assert_batches_like_loop(ufunc, [normal(2, 3), normal(3)])


def _scatter_keep_last(x, v):
    x = x * 1.0
    x[np.array([0, 2, 0])] = v
    return x


def _setitem(x, v):
    x = x * 1.0
    x[1:, 0] = v
    return x


def _setitem_separated(x, v):
    x = x * 1.0
    x[np.array([0, 1]), :, np.array([1, 0])] = v
    return x


PRIMITIVE_CASES = {
    "select": (lambda c, x, y: np.where(c, x, y), [rng.random((2, 3)) < .5, normal(3), normal(2, 3)]),
    "mul_zero_safe": (lambda x, y: elementwise.mul_zero_safe.bind(x, y), [normal(3), normal(2, 3)]),
    "convert": (lambda x: x.astype(np.float32), [normal(2, 3)]),
    "stop_gradient": (cr.stop_gradient, [normal(3)]),
    "reduce_sum": (lambda x: np.sum(x, axis=1), [normal(2, 3, 2)]),
    "reduce_sum_all": (np.sum, [normal(2, 3)]),
    "reduce_max": (lambda x: np.max(x, axis=(0, 2)), [normal(2, 3, 2)]),
    "reduce_min": (lambda x: np.min(x, axis=0), [normal(2, 3)]),
    "cumsum": (lambda x: np.cumsum(x, axis=1), [normal(2, 3)]),
    "argmax": (lambda x: np.argmax(x, axis=0), [normal(3, 2)]),
    "argmin": (lambda x: np.argmin(x, axis=1), [normal(3, 2)]),
    "argsort": (lambda x: np.argsort(x, axis=0), [normal(3, 2)]),
    "reshape": (lambda x: np.reshape(x, (3, 2)), [normal(2, 3)]),
    "transpose": (lambda x: np.transpose(x, (2, 0, 1)), [normal(2, 3, 4)]),
    "broadcast_to": (lambda x: np.broadcast_to(x, (2, 4, 3)), [normal(4, 1)]),
    "concatenate": (lambda x, y: np.concatenate([x, y, x], axis=1), [normal(2, 3), normal(2, 1)]),
    "getitem_basic": (lambda x: x[1:, ::2, None, 0], [normal(3, 4, 2)]),
    "getitem_advanced": (lambda x: x[:, np.array([2, 0, 2])], [normal(2, 3)]),
    "getitem_separated": (lambda x: x[np.array([0, 1]), :, np.array([1, 0])], [normal(2, 3, 2)]),
    "getitem_int_and_array": (lambda x: x[0, :, np.array([1, 0, 1])], [normal(2, 3, 2)]),
    "scatter": (_setitem, [normal(3, 2), normal(2)]),
    "scatter_repeated": (_scatter_keep_last, [normal(3, 2), normal(3, 2)]),
    "scatter_separated": (_setitem_separated, [normal(2, 3, 2), normal(2, 3)]),
    "scatter_add": (lambda c: shape.scatter_add_p.bind(
        c, index=shape.Index((np.array([0, 2, 0]),)), shape=(3, 2)), [normal(3, 2)]),
    "take_along_axis": (lambda x, i: np.take_along_axis(x, i, 1),
                        [normal(2, 3), np.array([[2, 0], [1, 1]])]),
    "take": (lambda x, i: np.take(x, i, axis=0), [normal(3, 2), np.array([2, 0])]),
    "put_along_axis_add": (lambda c, i: shape.put_along_add_p.bind(c, i, axis=1, shape=(2, 3)),
                           [normal(2, 2), np.array([[2, 0], [1, 1]])]),
    "zeros_like": (np.zeros_like, [normal(2, 3)]),
    "matmul": (lambda a, b: a @ b, [normal(2, 3), normal(3, 4)]),
    "matvec": (lambda a, b: a @ b, [normal(2, 3), normal(3)]),
    "einsum": (lambda a, b: np.einsum("ijk,kj->i", a, b), [normal(2, 3, 4), normal(4, 3)]),
    "outer": (np.outer, [normal(2), normal(3)]),
    "solve": (np.linalg.solve, [spd(3), normal(3, 2)]),
    "solve_stacked": (np.linalg.solve, [np.stack([spd(3), spd(3)]), normal(3, 1)]),
    "slogdet": (lambda a: tuple(np.linalg.slogdet(a)), [normal(3, 3)]),
    "det": (np.linalg.det, [normal(3, 3)]),
    "cholesky": (np.linalg.cholesky, [spd(3)]),
    "qr": (lambda a: tuple(np.linalg.qr(a)), [normal(3, 2)]),
    "eigh": (lambda a: np.linalg.eigh(a)[0], [spd(3)]),
    "svd": (lambda a: np.linalg.svd(a, compute_uv=False), [normal(3, 2)]),
    "norm2": (lambda x: np.linalg.norm(x, axis=1), [normal(2, 3)]),
    "pinv": (linalg.pinv, [normal(4, 3)]),
    "pinv_stacked": (linalg.pinv, [normal(2, 3, 4)]),
    "tria": (lambda a: tuple(linalg.tria_p.bind(a)), [normal(3, 5)]),
    "tria_tall_stacked": (lambda a: tuple(linalg.tria_p.bind(a)), [normal(2, 4, 3)]),
    "qr_tria": (lambda a: tuple(linalg.qr_tria_p.bind(a)), [normal(3, 4)]),
}


@pytest.mark.parametrize("name", sorted(PRIMITIVE_CASES))
def test_primitive_batch_rule_matches_loop(name):
    fn, examples = PRIMITIVE_CASES[name]
    assert_batches_like_loop(fn, examples)


def _library_primitives_without_batch_rule():
    """Asked of a fresh interpreter, so primitives defined by tests do not count."""
    code = """
import importlib, pkgutil, chainrule
from chainrule.core.primitive import batch_rules, jvp_rules
for info in pkgutil.walk_packages(chainrule.__path__, "chainrule."):
    if not info.name.startswith(("chainrule.relational", "chainrule.cli")):
        importlib.import_module(info.name)
print(" ".join(sorted(p.name for p in jvp_rules if p not in batch_rules)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    return set(out.split())


def test_linalg_factorization_derivatives_batch_like_loop():
    """Gradients through tria, pinv and qr_tria under vmap (their rules bind the stacked
    primitives on batched matrices)."""
    gram = lambda a: linalg.tria(a) @ np.swapaxes(linalg.tria(a), -1, -2)
    for fn, a in ((gram, normal(4, 3)), (linalg.pinv, normal(3, 4)),
                  (linalg.qr_tria, normal(2, 3))):
        assert_batches_like_loop(cr.grad(lambda a: np.sum(np.sin(fn(a)))), [a])


def test_every_differentiable_primitive_has_a_batch_rule():
    missing = _library_primitives_without_batch_rule()
    assert not missing, f"primitives without a batch rule: {missing}"


def test_primitive_without_batch_rule_runs_once_per_example():
    row_norms = primitive("test_row_norms", lambda x: np.sqrt(np.sum(x * x, axis=-1)),
                          lambda x: Aval(x.shape[:-1], x.dtype))
    assert_batches_like_loop(lambda x: row_norms.bind(x) * 2, [normal(2, 3)])
    assert vmap(row_norms.bind)(np.zeros((0, 2, 3))).shape == (0, 2)


def test_custom_jvp_batched_with_the_users_rule():
    calls = []

    @cr.custom_jvp
    def f(x, y):
        return np.sin(x) * y

    @f.defjvp
    def f_jvp(primals, tangents):
        calls.append(1)
        (x, y), (tx, ty) = primals, tangents
        return f(x, y), 2.0 * tx * y + np.sin(x) * ty    # 2.0, not cos: shows it is used

    x, y = normal(3), normal(3)
    assert_batches_like_loop(f, [x, y])
    assert_batches_like_loop(cr.grad(lambda x, y: np.sum(f(x, y)), argnums=(0, 1)), [x, y])
    assert_batches_like_loop(lambda x, y, t: cr.jvp(f, (x, y), (t, y))[1], [x, y, normal(3)])
    xs = normal(4, 3)
    calls.clear()
    total = lambda xs, y: np.sum(vmap(f, (0, None))(xs, y))
    dxs, dy = cr.grad(total, argnums=(0, 1))(xs, y)
    assert len(calls) == 1                       # once on the batch, not once per example
    np.testing.assert_allclose(dxs, 2.0 * np.broadcast_to(y, xs.shape))
    np.testing.assert_allclose(dy, np.sum(np.sin(xs), axis=0))


@cr.custom_vjp
def scaled_exp(x, y):
    return {"out": x * np.exp(y)}


def _scaled_exp_fwd(x, y):
    e = np.exp(y)
    return {"out": x * e}, (x, e)


def _scaled_exp_bwd(res, ct):
    x, e = res
    return ct["out"] * e, ct["out"] * x * e


scaled_exp.defvjp(_scaled_exp_fwd, _scaled_exp_bwd)


def test_custom_vjp_batched_with_the_users_rules():
    """Values, reverse mode (bwd vmapped; unbatched arguments' cotangents summed over the
    batch) and forward mode (custom_vjp_lin, the transposed bwd, vmapped)."""
    x, y, t = normal(3), normal(3), normal(3)
    out = lambda x, y: scaled_exp(x, y)["out"]
    assert_batches_like_loop(out, [x, y])
    assert_batches_like_loop(cr.grad(lambda x, y: np.sum(out(x, y) ** 2), argnums=(0, 1)),
                             [x, y])
    assert_batches_like_loop(lambda x, y, t: cr.jvp(out, (x, y), (t, x))[1], [x, y, t])
    total = lambda xs, y: np.sum(np.sin(vmap(out, (0, None))(xs, y)))
    xs = normal(4, 3)
    dxs, dy = cr.grad(total, argnums=(0, 1))(xs, y)
    per_example = [cr.grad(lambda x, y: np.sum(np.sin(out(x, y))), argnums=(0, 1))(x, y)
                   for x in xs]
    np.testing.assert_allclose(dxs, [d[0] for d in per_example])
    np.testing.assert_allclose(dy, sum(d[1] for d in per_example))
    check_grads(total, (xs, y), order=2)


def test_custom_vjp_with_untraceable_fwd_and_bwd_under_vmap():
    """fwd and bwd on arrays may call code chainrule cannot trace: then they run once
    per example."""
    @cr.custom_vjp
    def solve(a, b):
        return np.linalg.solve(a, b)

    def solve_fwd(a, b):
        x = np.linalg.solve(np.asarray(a), np.asarray(b))       # np.asarray: not traceable
        return x, (a, x)

    def solve_bwd(res, ct):
        a, x = res
        w = np.linalg.solve(np.asarray(a).T, np.asarray(ct))    # np.asarray: not traceable
        return -np.outer(w, x), w
    solve.defvjp(solve_fwd, solve_bwd)
    a, bs = spd(3), normal(4, 3)
    total = lambda a, bs: np.sum(vmap(solve, (None, 0))(a, bs) ** 2)
    da, dbs = cr.grad(total, argnums=(0, 1))(a, bs)
    want = cr.grad(lambda a, bs: np.sum(np.linalg.solve(a, bs.T) ** 2), argnums=(0, 1))(a, bs)
    np.testing.assert_allclose(da, want[0])
    np.testing.assert_allclose(dbs, want[1])


# --------------------------------------------------------------------------- axes and pytrees

def test_pytree_in_axes_and_out_axes():
    params = {"w": normal(3, 2), "b": normal(2)}
    xs = normal(4, 3)

    def f(p, x):
        y = np.tanh(x @ p["w"] + p["b"])
        return {"y": y, "s": np.sum(y)}

    out = vmap(f, in_axes=({"w": None, "b": None}, 0), out_axes={"y": 1, "s": 0})(params, xs)
    for i in range(4):
        ref = f(params, xs[i])
        np.testing.assert_allclose(out["y"][:, i], ref["y"])
        np.testing.assert_allclose(out["s"][i], ref["s"])


def test_negative_axes_and_unbatched_output():
    x = normal(2, 5)
    out = vmap(lambda v: (v * 2, np.ones(3)), in_axes=-1, out_axes=(-1, None))(x)
    np.testing.assert_allclose(out[0], x * 2)
    np.testing.assert_allclose(out[1], np.ones(3))


def test_unbatched_output_is_broadcast_into_a_writeable_array():
    c = normal(3)
    out = vmap(lambda v: c, in_axes=0)(normal(4, 2))
    np.testing.assert_allclose(out, np.broadcast_to(c, (4, 3)))
    out[0, 0] = 1.0
    jac = cr.jacfwd(lambda x: c)(normal(2))
    jac += 1.0
    np.testing.assert_allclose(jac, np.ones((3, 2)))


def test_nested_vmap_is_an_outer_product_of_batches():
    a, b = normal(4, 3), normal(5, 3)
    got = vmap(vmap(lambda x, y: np.dot(x, y), (None, 0)), (0, None))(a, b)
    np.testing.assert_allclose(got, a @ b.T)


def test_closure_over_arrays_and_scalars():
    w = normal(3, 3)
    got = vmap(lambda x: np.sin(w @ x) + 2.0)(normal(4, 3).T.T)
    assert got.shape == (4, 3)


# --------------------------------------------------------------------------- composition

def loss(w, x):
    return np.sum(np.tanh(w @ x) ** 2) + np.sum(w * w) * x[0]


def test_vmap_of_grad_equals_loop():
    w, xs = normal(2, 3), normal(4, 3)
    got = vmap(cr.grad(loss), in_axes=(None, 0))(w, xs)
    want = np.stack([cr.grad(loss)(w, x) for x in xs])
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_grad_of_vmap_equals_sum_of_grads():
    w, xs = normal(2, 3), normal(4, 3)
    total = lambda w: np.sum(vmap(loss, in_axes=(None, 0))(w, xs))
    want = sum(cr.grad(loss)(w, x) for x in xs)
    np.testing.assert_allclose(cr.grad(total)(w), want, rtol=1e-12)
    check_grads(total, (w,), order=2)


def test_vmap_of_jvp_and_vjp():
    x, v = normal(4, 3), normal(4, 3)
    f = lambda x: np.sin(x) * np.sum(x)
    got = vmap(lambda x, v: cr.jvp(f, (x,), (v,))[1])(x, v)
    np.testing.assert_allclose(got, np.stack([cr.jvp(f, (a,), (b,))[1] for a, b in zip(x, v)]))
    got = vmap(lambda x, u: cr.vjp(f, x)[1](u)[0])(x, v)
    np.testing.assert_allclose(got, np.stack([cr.vjp(f, a)[1](b)[0] for a, b in zip(x, v)]))


def test_vmapped_function_second_derivatives():
    x = normal(3, 2)
    f = lambda x: np.sum(vmap(lambda r: np.exp(r[0]) * np.cos(r[1]) + r @ r)(x))
    check_grads(f, (x,), order=2)


def test_per_example_gradients_through_vmap_of_grad_of_vmap():
    w, xs = normal(3), normal(4, 2, 3)
    inner = lambda w, x: np.sum(vmap(lambda r: np.sin(r @ w))(x))
    got = vmap(cr.grad(inner), (None, 0))(w, xs)
    want = np.stack([cr.grad(inner)(w, x) for x in xs])
    np.testing.assert_allclose(got, want, rtol=1e-12)


# --------------------------------------------------------------------------- Jacobians and Hessians

def vector_fn(x):
    a = np.arange(12.0).reshape(4, 3) / 10
    return np.tanh(a @ x) * np.sum(x ** 2) + np.concatenate([x, x[:1]])


@pytest.mark.parametrize("jac", [cr.jacfwd, cr.jacrev])
def test_jacobians_equal_loops_of_jvp_and_vjp(jac):
    x = normal(3)
    got = jac(vector_fn)(x)
    by_jvp = np.stack([cr.jvp(vector_fn, (x,), (e,))[1] for e in np.eye(3)], axis=1)
    y, pullback = cr.vjp(vector_fn, x)
    by_vjp = np.stack([pullback(e)[0] for e in np.eye(4)])
    np.testing.assert_allclose(got, by_jvp, rtol=1e-12)
    np.testing.assert_allclose(got, by_vjp, rtol=1e-12)


def test_jacobian_of_pytrees_and_matrices():
    p = {"a": normal(2, 2), "b": normal(3)}
    f = lambda p: (p["a"] @ p["b"][:2], np.outer(p["b"], p["b"]))
    for mode in ("fwd", "rev"):
        jac = cr.jacobian(f, mode=mode)(p)
        assert jac[0]["a"].shape == (2, 2, 2) and jac[1]["b"].shape == (3, 3, 3)
        np.testing.assert_allclose(jac[0]["a"][0], np.stack([p["b"][:2], 0 * p["b"][:2]]))
        b = p["b"]
        np.testing.assert_allclose(jac[1]["b"], np.einsum("ik,j->ijk", np.eye(3), b)
                                   + np.einsum("jk,i->ijk", np.eye(3), b))


def test_hessian_equals_loop_of_hvps_and_closed_form():
    def rosenbrock(x):
        return np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    x = normal(5)
    h = cr.hessian(rosenbrock)(x)
    hvp = lambda v: cr.jvp(cr.grad(rosenbrock), (x,), (v,))[1]
    np.testing.assert_allclose(h, np.stack([hvp(e) for e in np.eye(5)], axis=1), rtol=1e-12)
    np.testing.assert_allclose(h, rosenbrock_hessian(x), rtol=1e-10)   # derived by hand


def test_vmap_of_jacobian():
    xs = normal(4, 3)
    got = vmap(cr.jacrev(vector_fn))(xs)
    np.testing.assert_allclose(got, np.stack([cr.jacfwd(vector_fn)(x) for x in xs]), rtol=1e-12)


# --------------------------------------------------------------------------- errors

def test_error_batch_sizes_differ():
    with pytest.raises(ShapeError, match=r"different sizes \[2, 3\]"):
        vmap(lambda a, b: a + b)(normal(2), normal(3))


def test_error_nothing_batched():
    with pytest.raises(ShapeError, match="at least one batched argument"):
        vmap(lambda a: a, in_axes=None)(normal(2))


def test_error_in_axes_length():
    with pytest.raises(ShapeError, match="in_axes has 1 entries for 2 positional"):
        vmap(lambda a, b: a + b, in_axes=(0,))(normal(2), normal(2))


def test_error_axis_out_of_range():
    with pytest.raises(ShapeError, match="in_axes 2 is out of range for an array of dimension 2"):
        vmap(lambda a: a, in_axes=2)(normal(2, 3))


def test_error_in_axes_structure():
    with pytest.raises(ShapeError, match="does not match the structure"):
        vmap(lambda p: p["a"], in_axes=({"b": 0},))({"a": normal(2)})


def test_error_out_axes_none_for_batched_output():
    with pytest.raises(ShapeError, match="out_axes is None for an output that varies"):
        vmap(lambda a: a * 2, out_axes=None)(normal(2))


def test_error_value_dependent_python_control_flow():
    def f(x):
        return x if np.sum(x) > 0 else -x
    with pytest.raises(ConcretizationError, match="np.where, chainrule.cond"):
        vmap(f)(normal(3, 2))


def test_vmap_composes_with_jit():
    a = normal(3, 3)
    f = lambda x: np.tanh(a @ x) * x
    xs = normal(5, 3)
    want = np.stack([f(x) for x in xs])
    np.testing.assert_allclose(cr.jit(vmap(f))(xs), want)
    np.testing.assert_allclose(vmap(cr.jit(f))(xs), want)
    per_example = cr.jit(vmap(cr.grad(lambda x: np.sum(f(x)))))(xs)
    np.testing.assert_allclose(per_example, np.stack([cr.grad(lambda x: np.sum(f(x)))(x)
                                                      for x in xs]))


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_random_shapes_and_batch_positions(data):
    """Broadcasting binary ops, a reduction and a matmul on random shapes, with the
    batch axis of each operand at a random position (or absent)."""
    n = data.draw(st.integers(1, 3))
    shape = tuple(data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=3)))
    other = shape[len(shape) - data.draw(st.integers(0, len(shape))):]
    x, y = normal(*shape), normal(*other) if other else normal()
    axes = (data.draw(st.integers(0, len(shape))),
            data.draw(st.one_of(st.none(), st.integers(0, len(other)))))
    w = normal(shape[-1], 2)
    f = lambda x, y: (np.sum(np.maximum(x, y) * np.exp(y), axis=-1), x @ w)
    bx = np.stack([x] + [perturb(x) for _ in range(n - 1)], axes[0])
    by = y if axes[1] is None else np.stack([y] + [perturb(y) for _ in range(n - 1)], axes[1])
    got = vmap(f, in_axes=axes)(bx, by)
    want = looped(f, [bx, by], axes)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12)


def test_indexing_with_batched_integer_indices_is_a_gather():
    xs, idx = normal(2, 3), np.array([2, -1])
    np.testing.assert_allclose(vmap(lambda x, i: x[i])(xs, idx), [xs[0, 2], xs[1, -1]])
    rows = vmap(lambda i, x: x[i], (0, None))(np.array([1, 0, 1]), xs)
    np.testing.assert_allclose(rows, xs[[1, 0, 1]])
    gathered_squares = lambda x: np.sum(vmap(lambda i: x[i] * x[i])(np.array([1, 0, 1])))
    np.testing.assert_allclose(cr.grad(gathered_squares)(xs), 2 * xs * np.array([[1], [2]]))
