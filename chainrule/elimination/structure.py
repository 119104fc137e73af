"""The structure of a local partial derivative (one edge of the linearized graph) and
the cost model that counts multiplications.

An edge from vertex i (m_i scalars) to vertex k (m_k scalars) holds the Jacobian block
d v_k / d v_i, an m_k x m_i matrix that is rarely dense. Its `Structure` is one of

    Diagonal(n)        elementwise operations (n = 1 for scalar vertices);
    Dense(rows, cols)  blocks without zeros (d(W @ x)/dx = W);
    Sparse(pattern)    broadcasting, copies, reductions, reshapes, permutations,
                       indexing, and the zeros of point-dependent blocks such as
                       d(W @ x)/dW (one nonzero per entry of W): a fixed 0/1 pattern
                       (scipy.sparse, boolean);

plus a flag `constant`: the values do not depend on the point (linear operations such
as add, reshape or x * 2.0), so products of constants are folded when the plan is made.

Cost model (documented in the package docstring too). Eliminating vertex j multiplies,
for every predecessor i and successor k, the block B = d v_k / d v_j with the block
A = d v_j / d v_i. The product costs

    sum over the m_j scalars s of j:  nnz(column s of B) * nnz(row s of A)

multiplications: exactly the scalar products a sparse product must form. A diagonal
times anything costs the other's number of nonzeros, dense times dense m_k m_j m_i, and a
scalar vertex costs 1 per (predecessor, successor) pair, i.e. |preds| x |succs| for the
vertex: the model of the published counts. On tensor graphs this charges what Graphax's
sparse-tensor model charges where the two graphs agree (the MLP task: forward and
reverse equal); Graphax's Markowitz rule is another heuristic (the degree of one
scalar of a tensor vertex), ours takes the cheapest elimination, as on scalar graphs.
With `free_constants=True` (the "structured" model), a product with a constant 0/1
copy pattern (broadcast, reshape, permutation, selection) or of two constants costs
nothing, because it only moves or adds numbers or happens once when the plan is built.
Additions (fill-in into an existing edge) are never counted.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class Structure:
    """The nonzero structure of one Jacobian block, `rows x cols`."""
    kind: str                   # "diagonal" | "dense" | "sparse"
    rows: int
    cols: int
    pattern: object = None      # scipy.sparse.csr_matrix of bools, for "sparse"
    constant: bool = False      # values do not depend on the point
    unit: bool = False          # constant 0/1 entries: a pure copy / sum structure

    @property
    def nnz(self) -> int:
        if self.kind == "diagonal":
            return self.rows
        if self.kind == "dense":
            return self.rows * self.cols
        return int(self.pattern.nnz)

    def row_counts(self) -> np.ndarray:
        if self.kind == "diagonal":
            return np.ones(self.rows, np.int64)
        if self.kind == "dense":
            return np.full(self.rows, self.cols, np.int64)
        return np.diff(self.pattern.indptr).astype(np.int64)

    def col_counts(self) -> np.ndarray:
        if self.kind == "diagonal":
            return np.ones(self.cols, np.int64)
        if self.kind == "dense":
            return np.full(self.cols, self.rows, np.int64)
        return np.bincount(self.pattern.indices, minlength=self.cols).astype(np.int64)

    def as_pattern(self):
        if self.kind == "diagonal":
            return sp.identity(self.rows, dtype=bool, format="csr")
        if self.kind == "dense":
            return sp.csr_matrix(np.ones((self.rows, self.cols), bool))
        return self.pattern


SCALAR = Structure("diagonal", 1, 1)
SCALAR_CONSTANT = Structure("diagonal", 1, 1, constant=True)


def diagonal(n, constant=False):
    if n == 1:
        return SCALAR_CONSTANT if constant else SCALAR
    return Structure("diagonal", n, n, constant=constant)


def dense(rows, cols, constant=False):
    if rows == cols == 1:
        return diagonal(1, constant)
    return Structure("dense", rows, cols, constant=constant)


def from_matrix(matrix, constant: bool) -> Structure:
    """The structure of a known (constant) matrix."""
    m = np.asarray(matrix)
    rows, cols = m.shape
    nz = m != 0
    unit = constant and bool(np.all((m == 0) | (m == 1)))
    if rows == cols and not np.any(nz & ~np.eye(rows, dtype=bool)):
        return Structure("diagonal", rows, cols, constant=constant, unit=unit)
    if nz.all():
        return Structure("dense", rows, cols, constant=constant, unit=unit)
    return Structure("sparse", rows, cols, sp.csr_matrix(nz), constant=constant, unit=unit)


def product_cost(after: Structure, before: Structure, free_constants: bool) -> int:
    """Multiplications of `after @ before` (before: i -> j, after: j -> k)."""
    if free_constants and (after.constant and before.constant or after.unit or before.unit):
        return 0
    if after.kind == "diagonal":
        return before.nnz
    if before.kind == "diagonal":
        return after.nnz
    if after.kind == "dense" and before.kind == "dense":
        return after.rows * after.cols * before.cols
    return int(np.dot(after.col_counts(), before.row_counts()))


def product(after: Structure, before: Structure) -> Structure:
    """The structure of `after @ before`."""
    constant = after.constant and before.constant
    if after.kind == "diagonal" and before.kind == "diagonal":
        return diagonal(after.rows, constant)
    if after.kind == "diagonal" and not after.unit:
        return _with(before, constant)
    if before.kind == "diagonal" and not before.unit:
        return _with(after, constant)
    if after.kind == "dense" or before.kind == "dense":
        if after.kind == "dense" and before.kind == "dense" or after.rows * before.cols < 4096:
            pat = after.as_pattern().astype(np.int64) @ before.as_pattern().astype(np.int64)
            return _from_pattern(sp.csr_matrix(pat != 0), constant)
        return dense(after.rows, before.cols, constant)
    pat = after.as_pattern().astype(np.int64) @ before.as_pattern().astype(np.int64)
    return _from_pattern(sp.csr_matrix(pat != 0), constant)


def union(a: Structure | None, b: Structure) -> Structure:
    """The structure of a sum of two blocks (fill-in meeting an existing edge)."""
    if a is None:
        return b
    constant = a.constant and b.constant
    if a.kind == "diagonal" and b.kind == "diagonal":
        return diagonal(a.rows, constant)
    if a.kind == "dense" or b.kind == "dense":
        return dense(a.rows, a.cols, constant)
    return _from_pattern(sp.csr_matrix((a.as_pattern() + b.as_pattern()) != 0), constant)


def _with(s: Structure, constant: bool) -> Structure:
    if s.constant == constant and not s.unit:
        return s
    return Structure(s.kind, s.rows, s.cols, s.pattern, constant=constant)


def _from_pattern(pattern, constant) -> Structure:
    rows, cols = pattern.shape
    if rows == cols and pattern.nnz == rows and np.all(pattern.diagonal()):
        return diagonal(rows, constant)
    if pattern.nnz == rows * cols:
        return dense(rows, cols, constant)
    pattern.sort_indices()
    return Structure("sparse", rows, cols, pattern, constant=constant)
