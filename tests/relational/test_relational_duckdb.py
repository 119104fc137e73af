"""Relational AD on DuckDB: gradients of relational programs equal chainrule's dense
NumPy gradients of the same models (and closed forms); each operator's rule alone;
kernels compiled to SQL; identifier injection; malformed relations; atomic, resumable
`fit`."""
import numpy as np
import pytest

import chainrule as cr
from chainrule import relational as R
from chainrule.test_util import check_grads

import rel_models

TOL = dict(rtol=1e-9, atol=1e-12)


@pytest.fixture
def db():
    return R.connect()


def relational_grads(loss, params):
    return [rel_models.dense_param(g) for g in R.grad(loss, wrt=params)]


@pytest.mark.parametrize("model", ["logistic_regression", "matrix_factorization", "gcn"])
def test_model_gradients_equal_dense_numpy(db, model):
    loss, params, dense, *closed = getattr(rel_models, model)(db, np.random.default_rng(0))
    values = [rel_models.dense_param(p) for p in params]
    want = cr.grad(dense, argnums=tuple(range(len(params))))(*values)
    np.testing.assert_allclose(loss.item(), dense(*values), **TOL)
    for got, w in zip(relational_grads(loss, params), want):
        np.testing.assert_allclose(got, w, **TOL)
    check_grads(dense, values, order=1, modes=("rev",))
    if closed:
        np.testing.assert_allclose(want[0], closed[0](*values), **TOL)


# ---------------------------------------------------------------- each operator alone

D = np.arange(12.0).reshape(3, 4) / 7 - 0.5          # data keyed (i, j)
P0 = np.array([0.3, -1.2, 0.7, 0.7])                  # parameter keyed j (a tie at 2, 3)

OPERATORS = {
    "map": (lambda p, d: p.map(lambda v: np.sin(v) * v).sum(),
            lambda p: np.sum(np.sin(p) * p)),
    "map_linear": (lambda p, d: p.map(lambda v: 3.0 * v - 1.0).sum(),
                   lambda p: np.sum(3.0 * p - 1.0)),
    "join_one_to_one": (lambda p, d: R.join(p, d.sum(by="j"), on="j",
                                            kernel=lambda a, b: np.exp(a) * b).sum(),
                        lambda p: np.sum(np.exp(p) * D.sum(0))),
    "join_many_to_one": (lambda p, d: R.join(d, p, on="j", kernel=lambda x, w: np.tanh(x * w))
                         .sum(), lambda p: np.sum(np.tanh(D * p))),
    "join_additive_kernel": (lambda p, d: R.join(d, p, on="j", kernel=lambda x, w: x + w)
                             .map(lambda v: v * v).sum(), lambda p: np.sum((D + p) ** 2)),
    "cross_join": (lambda p, d: R.join(p, p.rename({"j": "k"}), on=(),
                                       kernel=lambda a, b: a * b * b).sum(),
                   lambda p: np.sum(p[:, None] * p[None, :] ** 2)),
    "self_join": (lambda p, d: R.join(p, p, on="j", kernel=lambda a, b: a * b).sum(),
                  lambda p: np.sum(p * p)),
    "sum_by": (lambda p, d: R.join(d, p, on="j", kernel=lambda x, w: x * w).sum(by="i")
               .map(lambda s: s ** 3).sum(), lambda p: np.sum((D @ p) ** 3)),
    "mean_by": (lambda p, d: R.join(d, p, on="j", kernel=lambda x, w: x * w).mean(by="i")
                .map(lambda s: s ** 2).mean(), lambda p: np.mean(np.mean(D * p, 1) ** 2)),
    "max_with_ties": (lambda p, d: p.max().map(lambda m: m * m),
                      lambda p: np.max(p) ** 2),
    "min_by": (lambda p, d: R.join(d, p, on="j", kernel=lambda x, w: x + w).min(by="i").sum(),
               lambda p: np.sum(np.min(D + p, 1))),
    "rename": (lambda p, d: R.join(p.rename({"j": "i"}), d.sum(by="i"), on="i",
                                   kernel=lambda a, b: a * b, missing="drop").sum(),
               lambda p: np.sum(p[:3] * D.sum(1))),
    "shared_node": (lambda p, d: R.join(p.map(np.exp), p.map(np.exp), on="j",
                                        kernel=lambda a, b: a / (1.0 + b)).sum(),
                    lambda p: np.sum(np.exp(p) / (1.0 + np.exp(p)))),
}


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_operator_rule(db, name):
    build, dense = OPERATORS[name]
    i, j = np.nonzero(np.ones_like(D))
    data = db.load("data", {"i": i, "j": j, "x": D[i, j]}, keys=("i", "j"), value="x")
    p = db.parameter("p", keys="j", init=lambda rng, shape: P0.copy(),
                     domain={"j": np.arange(4)})
    loss = build(p, data)
    np.testing.assert_allclose(loss.item(), dense(P0), **TOL)
    np.testing.assert_allclose(rel_models.dense_param(R.grad(loss, wrt=p)),
                               cr.grad(dense)(P0), **TOL)


def test_max_gradient_splits_ties_equally(db):
    p = db.parameter("p", keys="j", init=lambda rng, shape: P0.copy(),
                     domain={"j": np.arange(4)})
    g = rel_models.dense_param(R.grad(p.max(), wrt=p))
    np.testing.assert_array_equal(g, [0.0, 0.0, 0.5, 0.5])


def test_vector_kernels(db):
    V0 = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
    v = db.parameter("v", keys="j", width=3, init=lambda rng, shape: V0.copy(),
                     domain={"j": np.arange(2)})
    loss = v.map(lambda x: np.logaddexp(x, 0.5 * x) * np.dot(x, x)).sum() \
        .map(lambda s: np.sum(s * np.array([1.0, 2.0, 3.0])))
    dense = lambda V: np.sum(np.sum(np.logaddexp(V, 0.5 * V) * np.sum(V * V, 1)[:, None], 0)
                             * np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(loss.item(), dense(V0), **TOL)
    np.testing.assert_allclose(rel_models.dense_param(R.grad(loss, wrt=v)),
                               cr.grad(dense)(V0), **TOL)


def test_gradient_plan_is_simplified(db):
    loss, params, _, _ = rel_models.logistic_regression(db, np.random.default_rng(1))
    sql = R.grad(loss, wrt=params[0]).sql()
    # the per-row loss and label joins are one-to-one: no GROUP BY in their gradients;
    # the sum by i hands its gradient on without a join of its own, so d w is X^T g:
    # one join of the features with the per-row gradient, aggregated to w's key j.
    assert sql.count("GROUP BY") == 2             # forward sum by i, backward sum to j
    assert 'FROM cr_n2 AS l JOIN cr_g9 AS g ON g."i" = l."i" GROUP BY l."j"' in sql
    assert sql.count(" JOIN ") == 7               # forward 2, mean 1, loss rows 2, X^T g 1,
    #                                               and the final join onto all of w's keys
    assert "cr_n5 AS MATERIALIZED" in sql          # X @ w, used thrice, computed once
    assert "cr_n2 AS MATERIALIZED" not in sql      # a table scan is never copied


def test_unknown_kernel_operation_is_named(db):
    p = db.parameter("p", keys="j", domain={"j": np.arange(2)})
    with pytest.raises(R.UnsupportedKernelError, match="floor_divide"):
        p.map(lambda v: v // 2.0)


# ---------------------------------------------------------------- safety

@pytest.mark.parametrize("bad", ['x"; DROP TABLE labels; --', "a b", "1abc", "w`", "",
                                 "cr_value", "j' OR '1'='1"])
def test_identifiers_are_validated(db, bad):
    y = db.load("labels", {"i": np.arange(3), "y": np.ones(3)}, keys="i", value="y")
    with pytest.raises(R.InvalidIdentifierError, match="identifier|reserves"):
        db.table(bad, keys="i", value="y")
    with pytest.raises(R.InvalidIdentifierError):
        db.table("labels", keys=(bad,), value="y")
    with pytest.raises(R.InvalidIdentifierError):
        db.parameter(bad, keys="i")
    with pytest.raises(R.InvalidIdentifierError):
        y.rename({"i": bad})
    with pytest.raises(R.InvalidIdentifierError):
        db.load(bad, {"i": np.arange(2), "v": np.ones(2)}, keys="i", value="v")
    assert y.fetch()["value"].tolist() == [1.0, 1.0, 1.0]


def test_values_travel_as_parameters(db):
    y = db.load("labels", {"i": np.arange(2), "y": np.ones(2)}, keys="i", value="y")
    w = db.parameter("w", keys="i", init=0.5)
    loss = R.join(y, w, on="i", kernel=lambda a, b: a * b * b).sum()
    R.fit(loss, [w], lr=0.25, steps=1, progress=False)
    assert "0.25" not in R.grad(loss, wrt=w).sql()
    np.testing.assert_allclose(w.fetch()["value"], [0.25, 0.25])


def test_duplicate_keys_and_nulls_are_counted(db):
    db.load("t", {"i": np.array([0, 1, 1, 2, 2]), "v": np.ones(5)}, keys="i", value="v")
    db.con.execute('INSERT INTO "t" VALUES (NULL, 1.0), (3, NULL)')
    t = db.table("t", keys="i", value="v")
    with pytest.raises(R.MalformedRelationError) as e:
        t.sum().item()
    assert "2 key(s) ('i',) appear on more than one row" in str(e.value)
    assert "2 row(s) with NULL keys or value" in str(e.value)


def test_missing_join_keys_are_counted(db):
    x = db.load("x", {"i": np.arange(5), "v": np.ones(5)}, keys="i", value="v")
    y = db.load("y", {"i": np.arange(3), "v": np.ones(3)}, keys="i", value="v")
    joined = R.join(x, y, on="i", kernel=lambda a, b: a * b).sum()
    with pytest.raises(R.MalformedRelationError, match="2 row\\(s\\) of the left input have "
                                                       "no partner"):
        joined.item()
    assert R.join(x, y, on="i", kernel=lambda a, b: a * b, missing="drop").sum().item() == 3.0


def test_vector_length_mismatch_and_holes_are_counted(db):
    db.load("v", {"i": np.arange(3), "v": np.ones((3, 2))}, keys="i", value="v")
    db.con.execute('INSERT INTO "v" VALUES (7, [1.0, 2.0, 3.0]), (8, [1.0, NULL])')
    with pytest.raises(R.MalformedRelationError) as e:
        db.table("v", keys="i", value="v").sum().fetch()
    assert "1 vector(s) of a length other than 2" in str(e.value)
    assert "1 vector(s) with NULL elements" in str(e.value)


def test_malformed_programs_are_refused(db):
    x = db.load("x", {"i": np.arange(2), "j": np.arange(2), "v": np.ones(2)}, keys=("i", "j"),
                value="v")
    y = db.load("y", {"i": np.arange(2), "j": np.arange(2), "v": np.ones(2)}, keys=("i", "j"),
                value="v")
    with pytest.raises(R.RelationalError, match="join on exactly the shared keys"):
        R.join(x, y, on="i", kernel=lambda a, b: a * b)
    with pytest.raises(R.RelationalError, match="group by a subset"):
        x.sum(by="k")
    with pytest.raises(R.RelationalError, match="scalar relation without keys"):
        R.grad(x, wrt=db.parameter("p", keys="i")).sql()
    with pytest.raises(R.RelationalError, match="float scalar or a 1-d float"):
        x.map(lambda v: v > 0)
    with pytest.raises(R.RelationalError, match="there is no table 'nope'"):
        db.table("nope", keys="i", value="v")
    p = db.parameter("p", keys=("i", "q"))
    with pytest.raises(R.RelationalError, match="pass domain="):
        R.join(x, p.rename({"q": "j"}), on=("i", "j"), kernel=lambda a, b: a * b).sum().item()
    with pytest.raises(R.RelationalError, match="optimizer 'adamw' is not available"):
        R.fit(x.sum(), [p], optimizer="adamw")


# ---------------------------------------------------------------- fit

def test_fit_follows_dense_gradient_descent(db):
    loss, params, dense, _ = rel_models.logistic_regression(db, np.random.default_rng(2))
    w = rel_models.dense_param(params[0])
    losses = R.fit(loss, params, lr=0.5, steps=3, progress=False)
    want = []
    for _ in range(3):
        want.append(dense(w))
        w = w - 0.5 * cr.grad(dense)(w)
    np.testing.assert_allclose(losses, want, **TOL)
    np.testing.assert_allclose(rel_models.dense_param(params[0]), w, **TOL)


def test_interrupted_fit_keeps_last_step_and_resumes(tmp_path):
    def run(path, interrupt_at=None):
        db = R.connect(str(path))
        loss, params, _ = rel_models.matrix_factorization(db, np.random.default_rng(3))

        def stop(step, value):
            if step == interrupt_at:
                raise KeyboardInterrupt
        return db, loss, params, stop

    ref_db, ref_loss, ref_params, _ = run(tmp_path / "ref.duckdb")
    ref_losses = R.fit(ref_loss, ref_params, lr=0.2, steps=5, progress=False)

    db, loss, params, stop = run(tmp_path / "run.duckdb", interrupt_at=2)
    with pytest.raises(KeyboardInterrupt):
        R.fit(loss, params, lr=0.2, steps=5, callback=stop, progress=False)
    db.con.close()
    db = R.connect(str(tmp_path / "run.duckdb"))          # a new process, the same file
    U = db.parameter("U", keys="u", width=3)
    V = db.parameter("V", keys="i", width=3)
    ratings = db.table("ratings", keys=("u", "i"), value="r")
    loss = rebuild_mf_loss(ratings, U, V)
    resumed = R.fit(loss, [U, V], lr=0.2, steps=5, progress=False)
    np.testing.assert_allclose(resumed, ref_losses[2:], **TOL)
    for p, q in zip([U, V], ref_params):
        np.testing.assert_allclose(p.fetch()["value"], q.fetch()["value"], **TOL)


def rebuild_mf_loss(ratings, U, V, lam=0.1):
    user_rows = R.join(ratings, U, on="u", kernel=lambda r, u: u)
    pred = R.join(user_rows, V, on="i", kernel=lambda a, b: np.dot(a, b))
    mse = R.join(pred, ratings, on=("u", "i"), kernel=lambda p, r: (p - r) ** 2).mean()
    reg = R.join(U.map(lambda x: np.sum(x * x)).sum(), V.map(lambda x: np.sum(x * x)).sum(),
                 on=(), kernel=lambda a, b: a + b)
    return R.join(mse, reg, on=(), kernel=lambda m, s: m + lam * s)


def test_failure_inside_a_step_changes_nothing(db, monkeypatch):
    loss, params, _, _ = rel_models.logistic_regression(db, np.random.default_rng(4))
    R.fit(loss, params, lr=0.5, steps=1, progress=False)
    before = params[0].fetch()["value"]
    real = db.execute

    def failing(sql, p=None):
        if sql.startswith("INSERT OR REPLACE"):
            raise RuntimeError("disk full")
        return real(sql, p)
    monkeypatch.setattr(db, "execute", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        R.fit(loss, params, lr=0.5, steps=2, progress=False)
    monkeypatch.undo()
    np.testing.assert_array_equal(params[0].fetch()["value"], before)
    assert db.fit_step_done("w") == 1


# ---------------------------------------------------------------- every other error path

def _bad_inputs(db):
    x = db.load("x", {"i": np.arange(2), "v": np.ones(2)}, keys="i", value="v")
    vec = db.load("vec", {"i": np.arange(2), "v": np.ones((2, 3))}, keys="i", value="v")
    p = db.parameter("p", keys="i", domain={"i": np.arange(2)})
    other = R.connect().load("x", {"i": np.arange(2), "v": np.ones(2)}, keys="i", value="v")
    return {
        "two connections": (lambda: R.join(x, other, on="i", kernel=lambda a, b: a),
                            "different connections"),
        "item of keyed": (lambda: x.item(), "item\\(\\) needs a relation without keys"),
        "value is a key": (lambda: db.table("x", keys=("i", "v"), value="v"),
                           "both a key and the value"),
        "missing option": (lambda: R.join(x, x, on="i", kernel=lambda a, b: a, missing="skip"),
                           "missing='skip'"),
        "max of vectors": (lambda: vec.max(), "max of vector values"),
        "rename unknown": (lambda: x.rename({"k": "j"}), "'k' is not a key"),
        "grad wrt data": (lambda: R.grad(x.sum(), wrt=x), "takes db.parameter"),
        "outer product": (lambda: vec.map(lambda v: np.sum(np.outer(v, v))),
                          "contraction .* has no SQL form"),
        "width mismatch": (lambda: db.table("vec", keys="i", value="v", width=4),
                           "length 3, not width=4"),
        "load lacks column": (lambda: db.load("t", {"i": np.arange(2)}, keys="i", value="v"),
                              "no array for column 'v'"),
        "load float keys": (lambda: db.load("t", {"i": np.ones(2), "v": np.ones(2)}, keys="i",
                                            value="v"), "must be an integer array"),
        "load 3-d values": (lambda: db.load("t", {"i": np.arange(2), "v": np.ones((2, 2, 2))},
                                            keys="i", value="v"), "\\(rows,\\) or \\(rows, width\\)"),
        "bad width": (lambda: db.parameter("q", keys="i", width=0), "positive int"),
        "existing width": (lambda: db.parameter("vec", keys="i", value="v", width=2),
                           "exists with values of width 3"),
        "init shape": (lambda: db.parameter("q", keys="i", init=lambda rng, s: np.ones(5),
                                            domain={"i": np.arange(2)}).fetch(),
                       "init returned shape \\(5,\\), expected \\(2,\\)"),
        "domain keys": (lambda: db.parameter("q", keys="j", domain={"i": np.arange(2)})
                        .fetch(), "domain lacks keys \\['j'\\]"),
        "domain relation": (lambda: db.parameter("q", keys="j", domain=x).fetch(),
                            "do not include \\('j',\\)"),
        "connect target": (lambda: R.connect(42), "pass nothing"),
        "fit params": (lambda: R.fit(p.sum(), [x]), "list of db.parameter"),
    }


@pytest.mark.parametrize("case", sorted(_bad_inputs(R.connect())))
def test_error_messages(db, case):
    action, message = _bad_inputs(db)[case]
    with pytest.raises(R.RelationalError, match=message):
        action()


def test_spark_dialect_sql():
    from chainrule.relational.dialect import SparkDialect
    from chainrule.relational.kernel import Kernel, input_expr
    d = SparkDialect()
    k = Kernel(lambda a, w: np.dot(a, w) * a, [2, 2])
    out = k.value_sql(d, [input_expr("l.cr_value", 2, d), input_expr("r.cr_value", 2, d)])
    assert out.as_sql(d).startswith("array(CAST(") and "element_at(l.cr_value, 2)" in out.as_sql(d)
    assert d.q("w") == "`w`" and d.param("lr") == ":lr" and d.log1p("x") == "log1p(x)"
