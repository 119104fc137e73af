"""The same relational programs on Spark (local mode, one shared session): gradients
equal chainrule's dense NumPy gradients, and DuckDB's; fit runs and resumes."""
import os
import shutil

import numpy as np
import pytest

import chainrule as cr
from chainrule import relational as R

import rel_models

# Spark runs on the JVM: a machine with only Python and pip has none, and then these
# tests cannot run (the DuckDB tests cover the same plans).
pytestmark = pytest.mark.skipif(
    not (os.environ.get("JAVA_HOME") or shutil.which("java")),
    reason="Spark needs a Java runtime (17 or newer): install one, e.g. the "
           "openjdk-17-jre-headless package, to run the Spark tests")

TOL = dict(rtol=1e-9, atol=1e-12)


@pytest.fixture
def spark_db(spark_session):
    for name in spark_session.catalog.listTables():
        if name.isTemporary:
            spark_session.catalog.dropTempView(name.name)
    spark_session.conf.unset("chainrule.fit.w")             # the step count of a fit
    return R.connect(spark=spark_session)


@pytest.mark.parametrize("model", ["matrix_factorization", "gcn"])
def test_gradients_equal_dense_numpy_and_duckdb(spark_db, model):
    # vectors, dot products, cross joins on (), renames, parameters joined twice
    build = getattr(rel_models, model)
    loss, params, dense, *_ = build(spark_db, np.random.default_rng(0))
    duck_loss, duck_params, *_ = build(R.connect(), np.random.default_rng(0))
    values = [rel_models.dense_param(p) for p in params]
    want = cr.grad(dense, argnums=tuple(range(len(params))))(*values)
    got = [rel_models.dense_param(g) for g in R.grad(loss, wrt=params)]
    duck = [rel_models.dense_param(g) for g in R.grad(duck_loss, wrt=duck_params)]
    for g, d, w in zip(got, duck, want):
        np.testing.assert_allclose(g, w, **TOL)
        np.testing.assert_allclose(g, d, **TOL)


def test_fit_matches_duckdb_and_resumes(spark_db):
    loss, params, _, _ = rel_models.logistic_regression(spark_db, np.random.default_rng(5))
    duck_loss, duck_params, _, _ = rel_models.logistic_regression(
        R.connect(), np.random.default_rng(5))
    want = R.fit(duck_loss, duck_params, lr=0.5, steps=3, progress=False)

    def stop(step, value):
        if step == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        R.fit(loss, params, lr=0.5, steps=3, callback=stop, progress=False)
    again = R.connect(spark=spark_db.spark)                 # a new connection, same session
    params = [again.parameter("w", keys="j")]
    loss = rel_models.logistic_loss(again, params[0])
    rest = R.fit(loss, params, lr=0.5, steps=3, progress=False)
    assert len(rest) == 1
    np.testing.assert_allclose(rest, want[2:], **TOL)
    np.testing.assert_allclose(params[0].fetch()["value"], duck_params[0].fetch()["value"],
                               **TOL)
    with pytest.raises(R.MalformedRelationError, match="1 row\\(s\\) of the left input"):
        y = again.load("few", {"i": np.arange(6), "y": np.ones(6)}, keys="i", value="y")
        z = again.table("labels", keys="i", value="y")
        R.join(z, y, on="i", kernel=lambda a, b: a * b).sum().item()
