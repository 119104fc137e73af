"""cr.jit and cr.source: results equal eager results, composition both ways, the cache,
errors, and the generated source (runs without chainrule, deterministic, golden)."""
import inspect
import os
import pathlib
import subprocess
import sys
import textwrap
from collections import namedtuple
from dataclasses import dataclass

import numpy as np
import pytest

import chainrule as cr
from chainrule.test_util import check_grads

rng = np.random.default_rng(3)
GOLDEN = pathlib.Path(__file__).parent / "golden"


def assert_equal_results(got, want, rtol=1e-12):
    got_leaves, got_tree = cr.tree_flatten(got)
    want_leaves, want_tree = cr.tree_flatten(want)
    assert got_tree == want_tree
    for g, w in zip(got_leaves, want_leaves):
        assert np.shape(g) == np.shape(w) and np.asarray(g).dtype == np.asarray(w).dtype
        np.testing.assert_allclose(g, w, rtol=rtol, atol=1e-14)


# --------------------------------------------------------------------------- jit equals eager

def f(x, W):
    return np.sum(np.tanh(W @ x) ** 2) + np.log1p(np.exp(x)).mean()


def rosen(x):
    return np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def mlp_loss(params, x, y):
    h = np.tanh(x @ params["w1"] + params["b1"])
    z = h @ params["w2"] + params["b2"]
    m = np.max(z, axis=1, keepdims=True)
    lse = m + np.log(np.sum(np.exp(z - m), axis=1, keepdims=True))
    return np.mean(np.sum(y * (lse - z), axis=1))


def in_place(x):
    y = x * 1.0
    y[1] = 5 * x[0]
    y += x
    y[::2] *= 2.0
    return np.sum(y ** 2)


def gathers(x):
    return np.sum(np.flip(x) * np.roll(x, 1) + np.diag(np.outer(x, x))) + x[[0, 2, 2]] @ x[:3]


X, W = rng.standard_normal(4), rng.standard_normal((3, 4))
PARAMS = {"w1": rng.standard_normal((5, 4)), "b1": rng.standard_normal(4),
          "w2": rng.standard_normal((4, 3)), "b2": rng.standard_normal(3)}
BATCH, LABELS = rng.standard_normal((6, 5)), np.eye(3)[rng.integers(0, 3, 6)]

CASES = {
    "grad": (cr.grad(f), (X, W)),
    "grad argnums": (cr.grad(f, argnums=(0, 1)), (X, W)),
    "value_and_grad": (cr.value_and_grad(f), (X, W)),
    "jacfwd": (cr.jacfwd(lambda x: np.sin(W @ x) * x[:3]), (X,)),
    "jacrev": (cr.jacrev(lambda x: np.sin(W @ x) * x[:3]), (X,)),
    "hessian": (cr.hessian(rosen), (rng.standard_normal(5),)),
    "mlp grad": (cr.grad(mlp_loss), (PARAMS, BATCH, LABELS)),
    "in-place updates": (cr.grad(in_place), (rng.standard_normal(5),)),
    "gathers": (cr.grad(gathers), (rng.standard_normal(4),)),
    "where sqrt": (cr.grad(lambda x: np.sum(np.where(x > 0, np.sqrt(np.abs(x)), 0.0))),
                   (np.array([0.0, 4.0, -1.0]),)),
    "nonsmooth": (cr.grad(lambda x: np.max(x) + np.sum(np.maximum(x, 0.0)) + np.abs(x[0])),
                  (np.array([0.0, 3.0, 3.0]),)),
    "solve and norm": (cr.grad(lambda A, b: np.linalg.norm(np.linalg.solve(A, b)) +
                               np.linalg.slogdet(A)[1]),
                       (rng.standard_normal((3, 3)) + 3 * np.eye(3), rng.standard_normal(3))),
    "reductions": (cr.grad(lambda x: np.sum(np.cumsum(x, axis=1) * np.var(x, axis=0)) +
                           np.prod(x[0]) + np.std(x)), (rng.standard_normal((3, 4)),)),
    "einsum": (cr.grad(lambda a, b: np.sum(np.einsum("bij,bjk->bik", a, b) ** 2)),
               (rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 4, 2)))),
    "concatenate": (cr.grad(lambda x: np.sum(np.concatenate([x, x ** 2]) * np.arange(8.0))),
                    (rng.standard_normal(4),)),
}


@pytest.mark.parametrize("name", CASES)
def test_jit_equals_eager(name):
    fun, args = CASES[name]
    assert_equal_results(cr.jit(fun)(*args), fun(*args))


def test_second_order_under_jit():
    x = rng.standard_normal(5)
    hvp = lambda x, v: cr.jvp(cr.grad(rosen), (x,), (v,))[1]
    v = rng.standard_normal(5)
    assert_equal_results(cr.jit(hvp)(x, v), cr.hessian(rosen)(x) @ v, rtol=1e-10)


def test_pytrees_of_any_kind():
    Pair = namedtuple("Pair", "a b")

    @cr.register_dataclass
    @dataclass
    class Layer:
        w: np.ndarray
        b: np.ndarray

    def loss(layer, pair, scale=2.0):
        return scale * np.sum((layer.w * pair.a + layer.b) ** 2) + np.sum(pair.b)
    args = (Layer(np.ones(3), np.arange(3.0)), Pair(rng.standard_normal(3), np.ones(2)))
    got = cr.jit(cr.grad(loss, argnums=(0, 1)))(*args, scale=3.0)
    want = cr.grad(loss, argnums=(0, 1))(*args, scale=3.0)
    assert isinstance(got[0], Layer) and isinstance(got[1], Pair)
    assert_equal_results(got, want)


def test_python_scalars_and_outputs_that_are_inputs_or_constants():
    g = cr.jit(lambda x, y: (x, y * 2, np.ones(3), 5.0))
    x, y2, ones, five = g(np.arange(3.0), 1.5)
    np.testing.assert_array_equal(x, np.arange(3.0))
    assert y2 == 3.0 and five == 5.0
    ones[0] = 7.0                      # a fresh array, not the cached constant
    assert g(np.arange(3.0), 1.5)[2][0] == 1.0


# --------------------------------------------------------------------------- composition

def test_grad_of_jit_and_hessian_of_jit():
    jf = cr.jit(f)
    assert_equal_results(cr.grad(jf, argnums=(0, 1))(X, W), cr.grad(f, argnums=(0, 1))(X, W))
    x = rng.standard_normal(5)
    np.testing.assert_allclose(cr.hessian(cr.jit(rosen))(x), cr.hessian(rosen)(x), rtol=1e-12)
    check_grads(cr.jit(lambda x: np.sin(x) * np.cos(x[::-1])), (rng.standard_normal(3),),
                order=2)


def test_jit_inside_jit_and_grad_of_jit_of_grad():
    inner = cr.jit(lambda x: np.tanh(x) ** 2)
    outer = cr.jit(lambda x: np.sum(inner(x) * x))
    x = rng.standard_normal(4)
    np.testing.assert_allclose(outer(x), np.sum(np.tanh(x) ** 2 * x), rtol=1e-12)
    g2 = cr.grad(lambda x: np.sum(cr.jit(cr.grad(lambda y: np.sum(np.sin(y) ** 2)))(x)))
    np.testing.assert_allclose(g2(x), 2 * np.cos(2 * x), rtol=1e-12)


def test_jit_closing_over_a_traced_value():
    def outer(a):
        return cr.jit(lambda x: a * np.sin(x))(2.0)
    assert cr.grad(outer)(3.0) == pytest.approx(np.sin(2.0))


# --------------------------------------------------------------------------- cache

def test_cache_hits_and_retraces():
    calls = []

    def g(x, n):
        calls.append(1)
        return np.sum(x ** n)
    jg = cr.jit(g, static_argnums=1)
    jg(np.ones(3), 2)
    assert set(jg.last_compile_seconds) == {"trace", "simplify", "codegen"}
    jg(np.full(3, 2.0), 2)                 # same signature: hit
    assert jg.cache_info() == (1, 1, 1) and len(calls) == 1
    jg(np.ones(4), 2)                      # new shape
    jg(np.ones(3, np.float32), 2)          # new dtype
    assert jg(np.ones(3), 3) == 3.0        # new static value
    assert len(calls) == 4 and jg.cache_info().size == 4
    jg({"a": 1}["a"] * np.ones(3), 3)
    assert len(calls) == 4
    assert jg(np.ones(3, np.float32), 2).dtype == np.float32


def test_static_keyword_arguments():
    calls = []

    def g(x, power=2, scale=1.0):
        calls.append(1)
        return scale * np.sum(x ** power)
    jg = cr.jit(g, static_argnames="power")
    assert jg(np.ones(3), power=3, scale=2.0) == 6.0
    assert jg(np.ones(3), power=3, scale=3.0) == 9.0       # scale is dynamic: a hit
    assert jg(np.ones(3), power=2, scale=3.0) == 9.0       # new static value
    assert len(calls) == 2
    with pytest.raises(cr.ChainruleError, match=r"static argument power \(list\)"):
        jg(np.ones(3), power=[2])


def test_pytree_structure_is_part_of_the_signature():
    jg = cr.jit(lambda p: sum(np.sum(v) for v in p.values()))
    jg({"a": np.ones(2)})
    jg({"b": np.ones(2)})
    jg({"a": np.ones(2), "b": np.ones(2)})
    assert jg.cache_info().misses == 3


# --------------------------------------------------------------------------- errors

def test_error_value_dependent_control_flow_names_the_line():
    def relu_sum(x):
        if np.sum(x) > 0:  # the offending line
            return np.sum(x)
        return 0.0
    with pytest.raises(cr.ConcretizationError,
                       match=r"test_jit.py, line \d+: `if np.sum\(x\) > 0:  # the "
                             r"offending line`.*chainrule.cond.*static_argnums"):
        cr.jit(relu_sum)(np.ones(3))


def test_error_value_dependent_control_flow_inside_grad_under_jit():
    def h(x):
        while np.abs(x) > 1:
            x = x / 2
        return x
    with pytest.raises(cr.ConcretizationError, match=r"line \d+: `while np.abs\(x\) > 1:`"):
        cr.jit(cr.grad(h))(3.0)


def test_error_unhashable_static_argument():
    with pytest.raises(cr.ChainruleError, match=r"static argument 1 \(list\) is not hashable"):
        cr.jit(lambda x, n: x * len(n), static_argnums=1)(np.ones(2), [1, 2])


def test_error_static_argnums_out_of_range():
    with pytest.raises(cr.ChainruleError, match=r"static_argnums \(3,\) out of range"):
        cr.jit(lambda x: x, static_argnums=3)(np.ones(2))


def test_error_non_array_argument():
    with pytest.raises(cr.ChainruleError, match="is a str, not an array.*static_argnums"):
        cr.jit(lambda x, s: x)(np.ones(2), "name")


def test_error_source_of_a_closure_over_traced_values():
    def outer(a):
        return len(cr.source(lambda x: a * x, 2.0))
    with pytest.raises(cr.ChainruleError, match="closes over values traced"):
        cr.grad(outer)(3.0)


# --------------------------------------------------------------------------- generated source

def test_source_runs_without_chainrule(tmp_path):
    text = cr.source(cr.grad(mlp_loss), PARAMS, BATCH, LABELS)
    assert "chainrule" not in text and "consts" not in text
    np.savez(tmp_path / "inputs.npz", x=BATCH, y=LABELS, **PARAMS)
    script = textwrap.dedent("""
        import sys
        sys.modules["chainrule"] = None          # importing chainrule now fails
        import numpy as np
        data = np.load("inputs.npz")
        params = {k: data[k] for k in ("w1", "b1", "w2", "b2")}
        namespace = {}
        exec(open("generated.py").read(), namespace)
        grads = namespace["mlp_loss"](params, data["x"], data["y"])
        np.savez("grads.npz", **grads)
    """)
    (tmp_path / "generated.py").write_text(text)
    (tmp_path / "run.py").write_text(script)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "run.py"], cwd=tmp_path, check=True, env=env)
    got = dict(np.load(tmp_path / "grads.npz"))
    assert_equal_results(got, cr.grad(mlp_loss)(PARAMS, BATCH, LABELS))


def test_source_is_readable():
    text = cr.source(cr.grad(mlp_loss), PARAMS, BATCH, LABELS)
    lines = text.splitlines()
    assert lines[0] == "import numpy as np"
    assert "def mlp_loss(params, x, y):" in lines
    assert "    w1 = params['w1']" in lines
    assert any(line.startswith("    h = np.tanh(") for line in lines)
    line = inspect.getsourcelines(mlp_loss)[1] + 1
    assert f"    # test_jit.py:{line}: h = np.tanh(x @ params[\"w1\"] + params[\"b1\"])" \
        in lines
    assert any(t.startswith(f"    # derivative of test_jit.py:{line}:") for t in lines)
    assert lines[-1].startswith("    return {'b1': ")
    assert all(";" not in line for line in lines)


def test_source_is_deterministic():
    first = cr.source(cr.grad(mlp_loss), PARAMS, BATCH, LABELS)
    assert cr.source(cr.grad(mlp_loss), PARAMS, BATCH, LABELS) == first
    assert cr.source(cr.jit(cr.grad(mlp_loss)), PARAMS, BATCH, LABELS) == first


def test_constants_that_are_not_literals():
    big = rng.standard_normal(50)
    g = lambda x: np.sum(x * big) + np.sum(x[np.arange(50) % 7 == 0])
    text = cr.source(cr.grad(g), np.ones(50))
    assert "consts[0]" in text
    x = rng.standard_normal(50)
    np.testing.assert_allclose(cr.jit(cr.grad(g))(x), cr.grad(g)(x), rtol=1e-12)


GOLDEN_FUNCTIONS = {
    "w1_elementwise_grad": lambda: cr.source(
        cr.grad(_golden.elementwise), np.ones(10)),
    "mlp_value_and_grad": lambda: cr.source(
        cr.value_and_grad(_golden.mlp_loss), PARAMS, BATCH, LABELS),
    "unrolled_loop_grad": lambda: cr.source(
        cr.grad(_golden.unrolled, argnums=1), np.eye(3), np.ones(3)),
}


def _load_golden_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("golden_functions",
                                                  GOLDEN / "functions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_golden = _load_golden_module()


@pytest.mark.parametrize("name", GOLDEN_FUNCTIONS)
def test_golden_source(name):
    """Set CHAINRULE_UPDATE_GOLDEN=1 to rewrite the golden files after a deliberate
    change of the generated code."""
    text = GOLDEN_FUNCTIONS[name]()
    path = GOLDEN / f"{name}.py.txt"
    if os.environ.get("CHAINRULE_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


# --------------------------------------------------------------------------- control flow

def test_structured_control_flow_under_jit():
    def f(x, n):
        y = cr.fori_loop(0, 3, lambda i, v: v * np.cos(v) + x, x)
        y = cr.cond(np.sum(y) > 0, lambda a: a * 2.0, lambda a: -a, y)
        carry, ys = cr.scan(lambda c, xi: (c + np.sin(xi), c * xi), np.zeros(()), y)
        z = cr.while_loop(lambda s: s[0] < n, lambda s: (s[0] + 1, s[1] * 0.5), (0, carry))
        return np.sum(ys) + z[1]
    x = rng.standard_normal(4)
    n = np.asarray(3)
    for fun in (f, cr.grad(f)):
        assert_equal_results(cr.jit(fun)(x, n), fun(x, n))
    text = cr.source(f, x, n)         # loops and branches as Python, bodies as functions
    assert "consts" not in text and "def scan_body(" in text and "def while_body(" in text
    assert "    for " in text and "    while while_cond(" in text and " if " in text
    check_grads(cr.jit(lambda x: f(x, n)), (x,), order=1)


def test_vmap_of_jit_and_jit_of_vmap():
    g = cr.grad(lambda x, W: np.tanh(W @ x).sum())
    xs = rng.standard_normal((5, 4))
    want = np.stack([g(x, W) for x in xs])
    np.testing.assert_allclose(cr.vmap(cr.jit(g), in_axes=(0, None))(xs, W), want, rtol=1e-12)
    np.testing.assert_allclose(cr.jit(cr.vmap(g, in_axes=(0, None)))(xs, W), want, rtol=1e-12)


def test_error_value_dependent_shape_names_the_line():
    def zeros_of_length(x, n):
        return np.sum(np.zeros(int(n)) + x)
    with pytest.raises(cr.ConcretizationError,
                       match=r"line \d+: `return np.sum\(np.zeros\(int\(n\)\) \+ x\)`: "
                             r"int\(\) needs the value.*static_argnums"):
        cr.jit(zeros_of_length)(1.0, np.asarray(3))
    assert cr.jit(zeros_of_length, static_argnums=1)(1.0, 3) == 3.0


def test_jit_as_a_method():
    class Model:
        def __init__(self, scale):
            self.scale = scale

        @cr.jit
        def loss(self, w):
            return np.sum(self.w_scale(w) ** 2)

        def w_scale(self, w):
            return self.scale * w

    with pytest.raises(cr.ChainruleError, match="is a Model, not an array.*static_argnums"):
        Model(2.0).loss(np.ones(3))
    Model.loss = cr.jit(Model.loss.fun, static_argnums=0)
    assert Model(2.0).loss(np.ones(3)) == 12.0
    assert cr.grad(Model(2.0).loss)(np.ones(3)).tolist() == [8.0, 8.0, 8.0]


def test_jit_of_hessian_with_shifted_slices_regression():
    # Once generated `t[:, :, 1] = u` with mismatched shapes (found by the benchmarks).
    f = lambda x: np.sum(x[1:] * x[:-1] ** 2)
    x = np.arange(5.0)
    # d2/dx_i2 = 2 x_(i+1) (for i < 4), d2/dx_i dx_(i+1) = 2 x_i
    want = np.diag(np.append(2 * x[1:], 0.0)) + np.diag(2 * x[:-1], 1) + np.diag(2 * x[:-1], -1)
    np.testing.assert_allclose(cr.jit(cr.hessian(f))(x), want, rtol=1e-12)


def test_located_error_without_source_text_has_a_single_colon():
    namespace = {"np": np}
    exec(compile("def f(x):\n    return x if x.sum() > 0 else -x\n", "<typed>", "exec"),
         namespace)
    with pytest.raises(cr.ConcretizationError) as info:
        cr.jit(namespace["f"])(np.ones(2))
    assert "line 2: " in str(info.value) and "::" not in str(info.value)
