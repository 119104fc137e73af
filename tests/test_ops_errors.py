"""Bad uses of the NumPy functions raise chainrule errors that say what was wrong and
what to do, never NumPy's internal errors and never a wrong result."""
import numpy as np
import pytest

import chainrule as cr

X = np.ones((2, 3))


def _traced(fn):
    """Runs fn on a traced (2, 3) array, in forward mode."""
    return cr.jvp(lambda x: fn(x), (X,), (X,))


UNSUPPORTED = [
    (lambda x: np.linalg.eig(x[:, :2]), r"`np.linalg.eig`.*custom_vjp"),
    (lambda x: np.convolve(x[0], x[1]), r"`np.convolve`.*custom_vjp"),
    (lambda x: np.subtract.accumulate(x), r"`np.subtract.accumulate`"),
    (lambda x: np.add(x, x, where=x > 0), r"`np.add with argument\(s\) where`"),
    (lambda x: np.pad(x, 1, mode="mean"), r"np.pad\(mode='mean'\) is not supported .*"
                                          r"'constant', 'edge'"),
    (lambda x: np.var(x, where=x > 0), r"np.var\(\.\.\., where=mask\) is not supported; "
                                       r"select the elements first"),
    (lambda x: np.linalg.qr(x, mode="raw"), r"mode='raw' is not supported; use mode='reduced'"),
]


@pytest.mark.parametrize("fn, message", UNSUPPORTED)
def test_unsupported_is_named(fn, message):
    with pytest.raises(cr.UnsupportedOperationError, match=message):
        _traced(fn)


SHAPE_ERRORS = [
    (lambda x: x @ np.ones((2, 2)), r"matmul: shapes \(2, 3\) and \(2, 2\) do not align"),
    (lambda x: (x[..., None] * np.ones(3)) @ np.ones((4, 3, 3)),
     r"shapes \(2,\) and \(4,\) cannot be broadcast together"),
    (lambda x: np.dot(x, np.ones(2)), r"axis 1 of \(2, 3\) and axis 0 of \(2,\) differ"),
    (lambda x: np.tensordot(x, np.ones((2, 2)), axes=([1], [0])),
     r"tensordot: axis 1 of \(2, 3\) and axis 0 of \(2, 2\) differ in length"),
    (lambda x: np.einsum("ij,jk->ik", x, np.ones((2, 2))),
     r"einsum 'ij,jk->ik': an index has sizes 3 and 2 in operands of shapes "
     r"\[\(2, 3\), \(2, 2\)\]"),
    (lambda x: np.einsum("ij,jk->ik", x), r"einsum: 'ij,jk->ik' names 2 operands, got 1"),
    (lambda x: np.concatenate([x, np.ones((2, 2))]),
     r"np.concatenate: shapes \[\(2, 3\), \(2, 2\)\] differ outside axis 0"),
    (lambda x: np.concatenate([x, np.ones(3)]), r"shapes \[\(2, 3\), \(3,\)\] differ"),
    (lambda x: np.stack([x, x.T]), r"np.stack needs arrays of one shape"),
    (lambda x: np.reshape(x, (4, 2)), r"cannot reshape an array of shape \(2, 3\) into \(4, 2\)"),
    (lambda x: np.broadcast_to(x, (3, 3)), r"shapes \(2, 3\) and \(3, 3\) cannot be broadcast"),
    (lambda x: np.broadcast_to(x, (1, 3)), r"np.broadcast_to: an array of shape \(2, 3\) "
                                           r"cannot be broadcast to \(1, 3\)"),
    (lambda x: x + np.ones(4), r"shapes \(2, 3\) and \(4,\) cannot be broadcast together"),
    (lambda x: np.where(x > 0, x, np.ones(4)), r"shapes \(2, 3\) and \(2, 3\) and \(4,\) "
                                               r"cannot be broadcast"),
    (lambda x: np.transpose(x, (0, 0)), r"axes \(0, 0\) are not a permutation of the 2 axes"),
    (lambda x: np.sum(x, axis=2), r"axis 2 is out of bounds for an array of dimension 2"),
    (lambda x: np.cumsum(x, axis=-3), r"axis -3 is out of bounds"),
    (lambda x: np.squeeze(x, 0), r"cannot squeeze axis 0 of size 2"),
    (lambda x: np.take_along_axis(x, np.zeros(3, int), 1), r"indices and array need the same ndim"),
    (lambda x: x[np.array([0.5])], r"arrays used as indices must be integer or boolean, got float64"),
    (lambda x: np.cross(x, np.ones((2, 4))), r"np.cross needs vectors of length 2 or 3"),
    (lambda x: np.split(x, 2, axis=1), r"np.split: 2 sections do not divide an axis of length "
                                       r"3 equally; use np.array_split"),
    (lambda x: np.select([x > 0], [x, x]), r"np.select: 1 conditions but 2 choices"),
    (lambda x: np.quantile(x, 0.5, method="nearest"), r"only method='linear'"),
    (lambda x: np.reshape(x, (3, 2), order="F"), r"only order='C' reshapes are supported"),
    (lambda x: np.linalg.solve(x[:, :2], x[0]), r"np.linalg.solve: a of shape \(2, 2\) needs "
                                                r"b of shape \(2,\) or \(\.\.\., 2, k\), got \(3,\)"),
    (lambda x: np.linalg.inv(x), r"np.linalg.inv needs square matrices"),
    (lambda x: np.linalg.norm(x, 3), r"ord=3 is not a matrix norm"),
]


@pytest.mark.parametrize("fn, message", SHAPE_ERRORS)
def test_shape_errors(fn, message):
    with pytest.raises(cr.ShapeError, match=message):
        _traced(fn)


def test_list_of_traced_arrays_suggests_stack():
    with pytest.raises(cr.TracerConversionError, match=r"np.stack"):
        _traced(lambda x: np.sum(np.split(x, 3, axis=1)))


def test_masked_max_needs_initial_as_in_numpy():
    with pytest.raises(ValueError, match=r"np.max with a `where` mask needs `initial`"):
        _traced(lambda x: np.max(x, where=x > 0))


def test_value_dependent_indices_need_values():
    from chainrule.core.ir import Aval
    from chainrule.core.trace import trace_flat
    with pytest.raises(cr.ConcretizationError, match=r"np.nonzero needs the values"):
        trace_flat(lambda x: np.nonzero(x > 0), [Aval((3,), np.float64)], abstract=True)


def test_in_place_sort_points_to_np_sort():
    with pytest.raises(TypeError, match=r"use np.sort\(x\)"):
        _traced(lambda x: x.sort())
