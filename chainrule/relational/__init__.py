"""Relational auto-differentiation: models whose data lives in database tables.

A model is a query of joins, maps and aggregations with small kernel functions; its
gradient is again a query (one rule per operator), which the database engine runs
without ever forming a Jacobian: DuckDB embedded (out of core with a database file and a
memory limit) or Apache Spark. Kernels are plain Python functions traced by chainrule,
their values and derivatives compiled to SQL.

    db = R.connect()
    X = db.table("features", keys=("i", "j"), value="x")
    y = db.table("labels", keys=("i",), value="y")
    w = db.parameter("w", keys=("j",), init=0.0)
    z = R.join(X, w, on="j", kernel=lambda x, w: x * w).sum(by="i")
    loss = R.join(z, y, on="i", kernel=lambda z, y: np.logaddexp(0.0, -y * z)).mean()
    g = R.grad(loss, wrt=w)
    R.fit(loss, params=[w], lr=0.5, steps=50)
"""
from .dialect import check_identifier  # noqa: F401
from .engine import DuckDB, Spark, connect, fit  # noqa: F401
from .errors import (InvalidIdentifierError, MalformedRelationError,  # noqa: F401
                     RelationalError, UnsupportedKernelError)
from .plan import Gradient, Parameter, Relation  # noqa: F401


def join(left, right, on, kernel, missing="error") -> Relation:
    """Rows of `left` and `right` with equal `on` keys, valued kernel(left, right)."""
    return left.join(right, on, kernel, missing)


def grad(loss, wrt):
    """d loss / d parameter: a relation keyed like the parameter (a list for a list)."""
    if isinstance(wrt, (list, tuple)):
        return [Gradient(loss, p) for p in wrt]
    return Gradient(loss, wrt)


def normal(scale=1.0):
    """An `init` drawing parameter values from N(0, scale^2)."""
    return lambda rng, shape: scale * rng.standard_normal(shape)
