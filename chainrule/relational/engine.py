"""Connections to the engines that run the plans: DuckDB (embedded) and Apache Spark.

Both take the same SQL (up to the dialect) and differ only in how they run a query,
create a table from arrays, and swap updated parameter tables in: DuckDB in one
transaction, Spark by replacing temporary views once every new table is computed.
Neither engine is imported before it is used.
"""
from __future__ import annotations

import itertools
import os
import sys
import weakref

import numpy as np

from .dialect import DuckDBDialect, SparkDialect, check_identifier
from .errors import MalformedRelationError, RelationalError
from .plan import (VALUE, Join, Parameter, Query, Relation, Scan, SQLBuilder, gradient_sql,
                   lanewise, nodes_of, _order_by)

STATE_TABLE = "cr_fit_state"


class Database:
    """A connection. Relations made from it run on its engine."""
    dialect = None

    def __init__(self):
        self._checked = weakref.WeakSet()

    # ---- relations
    def table(self, name, keys, value, width=None) -> Scan:
        """A relation over an existing table: integer `keys` columns, a float (or
        float array, for vectors) `value` column."""
        check_identifier(name, "table name")
        check_identifier(value, "value column")
        if not self._table_exists(name):
            raise RelationalError(f"there is no table {name!r}; create it in the database "
                                  f"or load arrays with db.load({name!r}, ...)")
        found = self._value_width(name, value)
        if width is not None and found is not None and width != found:
            raise MalformedRelationError(f"table {name!r}: vectors of {value!r} have "
                                         f"length {found}, not width={width}")
        return Scan(self, name, keys, value, found)

    def load(self, name, data: dict, keys, value) -> Scan:
        """Creates (or replaces) table `name` from arrays: data[key] integer arrays and
        data[value] a float array (rows,) or (rows, width)."""
        check_identifier(name, "table name")
        keys = (keys,) if isinstance(keys, str) else tuple(keys)
        for column in (*keys, value):
            check_identifier(column, "column name")
            if column not in data:
                raise RelationalError(f"load {name!r}: no array for column {column!r}")
        values = np.asarray(data[value], dtype=np.float64)
        columns = {k: np.asarray(data[k]) for k in keys}
        for k, arr in columns.items():
            if arr.dtype.kind not in "iu" or arr.shape != values.shape[:1]:
                raise MalformedRelationError(
                    f"load {name!r}: key {k!r} must be an integer array with one entry per "
                    f"row ({values.shape[0]}), got {arr.dtype} of shape {arr.shape}")
        if values.ndim not in (1, 2):
            raise MalformedRelationError(f"load {name!r}: values must be (rows,) or "
                                         f"(rows, width), got shape {values.shape}")
        width = values.shape[1] if values.ndim == 2 else None
        self._create_table(name, {k: a.astype(np.int64) for k, a in columns.items()},
                           value, values)
        return Scan(self, name, keys, value, width)

    def parameter(self, name, keys, value="value", init=0.0, width=None, domain=None,
                  seed=0) -> Parameter:
        """A trainable relation stored in table `name`. An existing table is used as it
        is (so training resumes); otherwise the table is created on first use, with one
        row per key of `domain` (a relation with those key columns or a dict of
        arrays) or, without a domain, of the relation it is joined with. `init` is a
        float or a function (numpy Generator, shape) -> array."""
        if width is not None and (not isinstance(width, int) or width < 1):
            raise RelationalError(f"parameter {name!r}: width must be a positive int")
        if self._table_exists(name):
            found = self._value_width(name, value)
            if found != width:
                raise MalformedRelationError(
                    f"parameter table {name!r} exists with values of width {found}, but "
                    f"width={width} was asked; drop the table or match the width")
        return Parameter(self, name, keys, value, width, init, domain, seed)

    # ---- running
    def fetch(self, rel: Relation) -> dict:
        self.check(rel)
        return self._columns(rel.query(), {}, rel.keys, rel.width)

    def check(self, rel: Relation) -> None:
        """Creates missing parameter tables, then checks every table of the plan (no
        duplicate keys, no NULLs, vectors of the right length) and every join (each row
        finds a partner, unless missing='drop'). Raises MalformedRelationError with the
        counts of all problems found. Each node is checked once (until data is loaded)."""
        nodes = [n for n in nodes_of(rel) if n not in self._checked]
        for node in nodes:
            if isinstance(node, Parameter) and not self._table_exists(node.table):
                self._create_parameter(node)
        b = SQLBuilder(self.dialect)
        checks = []
        for node in nodes:
            if isinstance(node, Scan):
                checks += _table_checks(b, node)
            elif isinstance(node, Join) and node.missing == "error" and node.on:
                checks += _join_checks(b, node)
        if checks:
            sql = b.finish("SELECT " + ", ".join(f"({q}) AS c{i}"
                                                 for i, (q, _) in enumerate(checks)))
            counts = self._rows(sql, {})[0]
            problems = [msg(int(n or 0)) for (q, msg), n in zip(checks, counts) if n]
            if problems:
                raise MalformedRelationError("malformed relations:\n  " + "\n  ".join(problems))
        self._checked.update(nodes)

    def _create_parameter(self, p: Parameter):
        keys = self._parameter_keys(p)
        n = len(keys[p.keys[0]]) if p.keys else 1
        shape = (n,) if p.width is None else (n, p.width)
        if callable(p.init):
            values = np.asarray(p.init(np.random.default_rng(p.seed), shape), np.float64)
            if values.shape != shape:
                raise RelationalError(f"parameter {p.table!r}: init returned shape "
                                      f"{values.shape}, expected {shape}")
        else:
            values = np.full(shape, float(p.init))
        self._create_table(p.table, keys, p.value, values)

    def _parameter_keys(self, p) -> dict:
        if not p.keys:
            return {}
        domain = p.domain
        if domain is None:
            raise RelationalError(
                f"parameter {p.table!r}: cannot tell which keys it has (it is not joined "
                f"on all of {p.keys}); pass domain= a relation with those key columns or "
                f"a dict of key arrays")
        if isinstance(domain, dict):
            missing = [k for k in p.keys if k not in domain]
            if missing:
                raise RelationalError(f"parameter {p.table!r}: domain lacks keys {missing}")
            return {k: np.asarray(domain[k], np.int64) for k in p.keys}
        if not set(p.keys) <= set(domain.keys):
            raise RelationalError(f"parameter {p.table!r}: the domain's keys {domain.keys} "
                                  f"do not include {p.keys}")
        b = SQLBuilder(self.dialect)
        cols = ", ".join(self.dialect.q(k) for k in p.keys)
        sql = b.finish(f"SELECT DISTINCT {cols} FROM {b.node(domain)}"
                       + _order_by(self.dialect, p.keys))
        return self._columns(sql, {}, p.keys, None, value=False)

    def _columns(self, sql, params, keys, width, value=True) -> dict:
        rows = self._rows(sql, params)
        out = {k: np.array([r[i] for r in rows], dtype=np.int64) for i, k in enumerate(keys)}
        if value:
            vals = [r[len(keys)] for r in rows]
            shape = (len(rows),) if width is None else (len(rows), width)
            out["value"] = np.array(vals, dtype=np.float64).reshape(shape)
        return out

    # ---- training
    def fit_step_done(self, fit_name) -> int:
        raise NotImplementedError

    def sgd_step(self, loss, params, lr, fit_name, step) -> float:
        """One gradient step on every parameter, swapped in atomically; the loss
        before the step."""
        raise NotImplementedError

    def _sgd_sql(self, loss, param, with_loss):
        """The query of param - lr * gradient (and the loss, if asked), the learning
        rate a named parameter `lr`."""
        lr = self.dialect.param("lr")
        update = lambda p, g: lanewise(lambda a, b: f"({a} - {lr} * {b})", p, g)
        return gradient_sql(loss, param, update, loss_column=with_loss)


def _table_checks(b, s: Scan):
    d = b.dialect
    name = b.node(s)
    keys = ", ".join(d.q(k) for k in s.keys)
    what = f"table {s.table!r}"
    nulls = " OR ".join([f"{d.q(k)} IS NULL" for k in s.keys] + [f"{VALUE} IS NULL"])
    checks = [(f"SELECT COUNT(*) FROM {name} WHERE {nulls}",
               lambda n: f"{what}: {n} row(s) with NULL keys or value {s.keys + (s.value,)}")]
    if s.keys:
        checks.append((f"SELECT COUNT(*) FROM (SELECT {keys} FROM {name} GROUP BY {keys} "
                       f"HAVING COUNT(*) > 1) AS d",
                       lambda n: f"{what}: {n} key(s) {s.keys} appear on more than one row"))
    else:
        checks.append((f"SELECT CASE WHEN COUNT(*) = 1 THEN 0 ELSE 1 END FROM {name}",
                       lambda n: f"{what}: a relation without keys needs exactly one row"))
    if s.width is not None:
        checks.append((f"SELECT COUNT(*) FROM {name} WHERE {d.length(VALUE)} <> {s.width}",
                       lambda n: f"{what}: {n} vector(s) of a length other than {s.width}"))
        holes = " OR ".join(f"{d.element(VALUE, k)} IS NULL" for k in range(s.width))
        checks.append((f"SELECT COUNT(*) FROM {name} WHERE CASE WHEN "
                       f"{d.length(VALUE)} = {s.width} THEN {holes} ELSE FALSE END",
                       lambda n: f"{what}: {n} vector(s) with NULL elements"))
    return checks


def _join_checks(b, j: Join):
    q = b.dialect.q
    left, right = j.inputs
    names = b.node(left), b.node(right)
    checks = []
    for (a, other), side in zip(((names[0], names[1]), (names[1], names[0])), ("left", "right")):
        cond = " AND ".join(f"o.{q(k)} = s.{q(k)}" for k in j.on)
        checks.append((
            f"SELECT COUNT(*) FROM {a} AS s WHERE NOT EXISTS "
            f"(SELECT 1 FROM {other} AS o WHERE {cond})",
            lambda n, side=side: (
                f"join of {left!r} with {right!r} on {j.on}: {n} row(s) of the {side} "
                f"input have no partner and would be dropped silently; fix the data or "
                f"pass missing='drop' to drop them on purpose")))
    return checks


# --------------------------------------------------------------------------- DuckDB

class DuckDB(Database):
    """DuckDB, embedded: in memory, or a database file (with `memory_limit` it trains
    on data larger than memory, spilling to `temp_directory`)."""
    dialect = DuckDBDialect()

    def __init__(self, path=None, memory_limit=None, threads=None, temp_directory=None,
                 connection=None):
        super().__init__()
        import duckdb
        config = {"preserve_insertion_order": False}
        if memory_limit:
            config["memory_limit"] = str(memory_limit)
        if threads:
            config["threads"] = int(threads)
        if temp_directory:
            config["temp_directory"] = str(temp_directory)
        self.con = connection or duckdb.connect(path or ":memory:", config=config)

    def execute(self, sql, params=None):
        return self.con.execute(str(sql), params or None)

    def _rows(self, sql, params):
        return self.execute(sql, params).fetchall()

    def _table_exists(self, name):
        return bool(self._rows("SELECT COUNT(*) FROM duckdb_tables() WHERE table_name = $n",
                               {"n": name})[0][0]) or bool(self._rows(
            "SELECT COUNT(*) FROM duckdb_views() WHERE view_name = $n", {"n": name})[0][0])

    def _value_width(self, table, value):
        q = self.dialect.q
        kind = self._rows(f"SELECT typeof({q(value)}) FROM {q(table)} LIMIT 1", {})
        if not kind or not kind[0][0].endswith("]"):
            return None
        return int(self._rows(f"SELECT len({q(value)}) FROM {q(table)} LIMIT 1", {})[0][0])

    def _create_table(self, name, keys, value, values):
        q = self.dialect.q
        cols = [f"unnest($k{i}) AS {q(k)}" for i, k in enumerate(keys)]
        params = {f"k{i}": a for i, a in enumerate(keys.values())}
        params["v"] = values if values.ndim == 1 else values.tolist()
        kind = "DOUBLE" if values.ndim == 1 else "DOUBLE[]"
        cols.append(f"CAST(unnest($v) AS {kind}) AS {q(value)}")
        self.execute(f"CREATE OR REPLACE TABLE {q(name)} AS SELECT {', '.join(cols)}", params)
        self._checked = weakref.WeakSet()

    def fit_step_done(self, fit_name):
        self.execute(f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} "
                     f"(fit VARCHAR PRIMARY KEY, step BIGINT)")
        rows = self._rows(f"SELECT step FROM {STATE_TABLE} WHERE fit = $f", {"f": fit_name})
        return rows[0][0] if rows else 0

    def sgd_step(self, loss, params, lr, fit_name, step):
        q = self.dialect.q
        self.execute("BEGIN TRANSACTION")
        try:
            for i, p in enumerate(params):
                sql = self._sgd_sql(loss, p, with_loss=i == 0)
                self.execute(f"CREATE OR REPLACE TEMP TABLE cr_new_{i} AS {sql}", {"lr": lr})
            value = self._rows("SELECT cr_loss FROM cr_new_0 LIMIT 1", {})[0][0]
            self.execute("ALTER TABLE cr_new_0 DROP COLUMN cr_loss")
            for i, p in enumerate(params):
                self.execute(f"DELETE FROM {q(p.table)}")
                self.execute(f"INSERT INTO {q(p.table)} BY NAME SELECT * FROM cr_new_{i}")
                self.execute(f"DROP TABLE cr_new_{i}")
            self.execute(f"INSERT OR REPLACE INTO {STATE_TABLE} VALUES ($f, $s)",
                         {"f": fit_name, "s": step})
            self.execute("COMMIT")
        except BaseException:
            self.execute("ROLLBACK")
            raise
        return float(value)


# --------------------------------------------------------------------------- Spark

class Spark(Database):
    """Apache Spark through PySpark: an existing SparkSession (a cluster), or a local
    one. Tables are the session's tables and temporary views; parameters are
    temporary views over checkpointed DataFrames, replaced after each step, and the
    step count of a fit is kept in the session's configuration (so training resumes
    within the session)."""
    dialect = SparkDialect()

    def __init__(self, session=None):
        super().__init__()
        if session is None:
            from pyspark.sql import SparkSession
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            session = (SparkSession.builder.master("local[2]").appName("chainrule")
                       .config("spark.ui.enabled", "false")
                       .config("spark.ui.showConsoleProgress", "false")
                       .config("spark.sql.shuffle.partitions", "4").getOrCreate())
        self.spark = session
        self._query_ids = itertools.count(1)

    def _df(self, query, params, views):
        """The DataFrame of a query; its shared CTEs become cached views (computed once,
        on first use), appended to `views` for `_drop` once the result is taken."""
        if isinstance(query, Query) and query.shared:
            query = query.renamed(next(self._query_ids))
            earlier = {}
            for name, sql in query.ctes.items():
                if name in query.shared:
                    one = Query(self.dialect, dict(earlier), sql).statement()
                    df = self.spark.sql(one, args=params or None).cache()
                    df.createOrReplaceTempView(name)
                    views.append((name, df))
                else:
                    earlier[name] = sql
            query = query.statement(earlier)
        return self.spark.sql(str(query), args=params or None)

    def _drop(self, views):
        for name, df in views:
            self.spark.catalog.dropTempView(name)
            df.unpersist()
        views.clear()

    def _rows(self, sql, params):
        views = []
        try:
            return [tuple(r) for r in self._df(sql, params, views).collect()]
        finally:
            self._drop(views)

    def _table_exists(self, name):
        return self.spark.catalog.tableExists(name)

    def _value_width(self, table, value):
        from pyspark.sql.types import ArrayType
        if not isinstance(self.spark.table(self.dialect.q(table)).schema[value].dataType,
                          ArrayType):
            return None
        q = self.dialect.q
        return int(self._rows(f"SELECT size({q(value)}) FROM {q(table)} LIMIT 1", {})[0][0])

    def _create_table(self, name, keys, value, values):
        from pyspark.sql.types import (ArrayType, DoubleType, LongType, StructField,
                                       StructType)
        vtype = DoubleType() if values.ndim == 1 else ArrayType(DoubleType(), False)
        schema = StructType([StructField(k, LongType(), False) for k in keys]
                            + [StructField(value, vtype, False)])
        rows = list(zip(*[a.tolist() for a in keys.values()], values.tolist()))
        self.spark.createDataFrame(rows, schema).createOrReplaceTempView(name)
        self._checked = weakref.WeakSet()

    def fit_step_done(self, fit_name):
        return int(self.spark.conf.get(f"chainrule.fit.{fit_name}", "0"))

    def sgd_step(self, loss, params, lr, fit_name, step):
        views = []
        try:
            new = [self._df(self._sgd_sql(loss, p, with_loss=i == 0), {"lr": lr},
                            views).localCheckpoint() for i, p in enumerate(params)]
        finally:
            self._drop(views)
        value = new[0].select("cr_loss").first()[0]
        new[0] = new[0].drop("cr_loss")
        for p, df in zip(params, new):
            df.createOrReplaceTempView(p.table)
        self.spark.conf.set(f"chainrule.fit.{fit_name}", str(step))
        return float(value)


def connect(target=None, *, spark=None, memory_limit=None, threads=None,
            temp_directory=None) -> Database:
    """A connection: DuckDB in memory (no target), a DuckDB database file (a path),
    local Spark ("spark"), or an existing SparkSession (spark=session)."""
    if spark is not None or target == "spark":
        return Spark(spark)
    if target is not None and not isinstance(target, (str, os.PathLike)):
        raise RelationalError(f"connect({target!r}): pass nothing (DuckDB in memory), a "
                              f"database file path, or 'spark'")
    return DuckDB(target, memory_limit=memory_limit, threads=threads,
                  temp_directory=temp_directory)


def fit(loss, params, optimizer="sgd", lr=0.1, steps=100, callback=None, name=None,
        progress=True):
    """Trains `params` to lower the scalar relation `loss`, on the engine. Each step
    updates every parameter table at once (atomically) and records the step, so an
    interrupted fit leaves the last complete step and a new call resumes from it, up
    to `steps` steps in total. `callback(step, loss)` runs after each step. Returns the
    losses of the steps run."""
    if optimizer != "sgd":
        raise RelationalError(f"optimizer {optimizer!r} is not available; use 'sgd'")
    params = list(params)
    if not params or not all(isinstance(p, Parameter) for p in params):
        raise RelationalError("fit(params=...) takes a list of db.parameter(...) relations")
    db = loss.db
    db.check(loss)
    fit_name = name or "+".join(sorted(p.table for p in params))
    losses = []
    for step in range(db.fit_step_done(fit_name) + 1, steps + 1):
        value = db.sgd_step(loss, params, float(lr), fit_name, step)
        losses.append(value)
        if progress:
            print(f"fit {fit_name}: step {step}/{steps} loss {value:.6g}", file=sys.stderr)
        if callback is not None:
            callback(step, value)
    return losses
