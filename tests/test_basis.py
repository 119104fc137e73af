"""Jacobians on a structured identity basis (transforms/basis.py): each diagonal rule
gives what the batch rule gives on the dense basis, and Jacobians through them match
finite differences in both modes."""
import numpy as np
import pytest

import chainrule as cr
from chainrule.core.primitive import DiagonalBatch, diagonal_rules, impl_rules
from chainrule.ops.contraction import contract_p
from chainrule.ops.elementwise import mul_zero_safe, prims
from chainrule.ops.reductions import reduce_sum_p
from chainrule.ops.shape import reshape_p
from chainrule.transforms.basis import apply_structured
from chainrule.core.batch_axes import move_batch_axis
from chainrule.transforms.batching import apply_batched
from chainrule.test_util import numerical_jvp

rng = np.random.default_rng(7)
D = rng.standard_normal((3, 4))          # the d of a DiagonalBatch over 12 basis arrays
N = D.size


def _dense(value, dim):
    value = value.dense() if type(value) is DiagonalBatch else value
    return move_batch_axis(value, dim, 0, N)


CASES = [
    (prims["multiply"], [DiagonalBatch(D), rng.standard_normal(4)], [0, None], {}),
    (prims["multiply"], [rng.standard_normal((3, 1)), DiagonalBatch(D)], [None, 0], {}),
    (mul_zero_safe, [DiagonalBatch(D), rng.standard_normal((3, 4))], [0, None], {}),
    (prims["true_divide"], [DiagonalBatch(D), rng.uniform(1, 2, 4)], [0, None], {}),
    (prims["negative"], [DiagonalBatch(D)], [0], {}),
    (prims["add"], [DiagonalBatch(D), DiagonalBatch(D * 2)], [0, 0], {}),
    (prims["subtract"], [DiagonalBatch(D), DiagonalBatch(-D)], [0, 0], {}),
    (prims["add"], [DiagonalBatch(D), rng.standard_normal((N, 3, 4))], [0, 0], {}),
    (prims["multiply"], [DiagonalBatch(D), rng.standard_normal((5, 3, 4))], [0, None], {}),
    (reshape_p, [DiagonalBatch(D)], [0], {"shape": (2, 6)}),
    (reduce_sum_p, [DiagonalBatch(D)], [0], {"axes": (0, 1)}),
    (reduce_sum_p, [DiagonalBatch(D)], [0], {"axes": (1,)}),
    (contract_p, [rng.standard_normal((5, 4)), DiagonalBatch(D)], [None, 0],
     {"spec": ("ij", "kj", "ik")}),
    (contract_p, [DiagonalBatch(D), rng.standard_normal((4, 3, 2))], [0, None],
     {"spec": ("ab", "bac", "c")}),
    (contract_p, [DiagonalBatch(D), rng.standard_normal((3,))], [0, None],
     {"spec": ("ab", "a", "ab")}),                 # the basis index stays: dense fallback
]


@pytest.mark.parametrize("prim, args, dims, params", CASES,
                         ids=[f"{c[0].name}-{i}" for i, c in enumerate(CASES)])
def test_diagonal_rule_equals_the_batch_rule_on_the_dense_basis(prim, args, dims, params):
    got, got_dim = apply_structured(prim, list(args), list(dims), N, params)
    dense_args = [a.dense() if type(a) is DiagonalBatch else a for a in args]
    want, want_dim = apply_batched(prim, dense_args, list(dims), N, params)
    np.testing.assert_allclose(_dense(got, got_dim), _dense(want, want_dim), rtol=1e-14)


def test_structured_rules_exist_for_the_primitives_that_keep_the_basis_cheap():
    assert {prims["multiply"], prims["add"], prims["negative"], contract_p, reshape_p,
            reduce_sum_p} <= set(diagonal_rules)


def test_diagonal_batch_dense_is_the_scaled_identity():
    dense = DiagonalBatch(D).dense()
    assert dense.shape == (N, 3, 4)
    np.testing.assert_array_equal(dense.reshape(N, N), np.diag(D.ravel()))


def test_matrix_product_with_the_basis_is_not_a_product_with_the_identity(monkeypatch):
    """jacfwd of A @ x reads A through the contract rule with the basis: no operand of
    any contraction is an identity matrix."""
    A = rng.standard_normal((6, 5))
    seen = []
    impl = impl_rules[contract_p]

    def watch(a, b, spec):
        seen.append((np.shape(a), np.shape(b)))
        return impl(a, b, spec)
    monkeypatch.setitem(impl_rules, contract_p, watch)
    J = cr.jacfwd(lambda x: np.tanh(A @ x) * x[0])(rng.standard_normal(5))
    assert J.shape == (6, 5)
    assert all((5, 5) not in shapes for shapes in seen), seen


@pytest.mark.parametrize("f", [
    lambda A, x: np.tanh(A @ x) * x[:1] + np.sin(A @ x),
    lambda A, x: np.tanh(x @ A.T) * 3 - x.sum() + (x.reshape(5, 1) * A.T).sum(0)[:5].sum(),
    lambda A, x: np.einsum("ij,j->i", A, -x / 2.0),
    lambda A, x: (x * 2 + x).reshape(5, 1),
    lambda A, x: np.outer(x, x) - x,
])
def test_jacobians_through_structured_rules_match_finite_differences(f):
    A = rng.standard_normal((7, 5))
    x = rng.standard_normal(5)
    fx = lambda x: f(A, x)
    numeric = np.stack([numerical_jvp(fx, (x,), (e,), 1e-6) for e in np.eye(5)], -1)
    for jac in (cr.jacfwd, cr.jacrev):
        np.testing.assert_allclose(jac(fx)(x), numeric, rtol=1e-6, atol=1e-8)
    # nested: the basis meets tracers of an enclosing transform; the reference, one
    # Hessian-vector product per column, never builds a basis
    loss = lambda x: np.sum(fx(x) ** 2)
    hess = cr.jacfwd(cr.jacrev(loss))(x)
    np.testing.assert_allclose(hess, hess.T, rtol=1e-10, atol=1e-10)
    hvps = np.stack([cr.jvp(cr.grad(loss), (x,), (e,))[1] for e in np.eye(5)], -1)
    np.testing.assert_allclose(hess, hvps, rtol=1e-10, atol=1e-10)
