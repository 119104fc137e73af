"""The logical plan: relations as nodes, their SQL, and the gradient rule of each node.

A relation has integer key columns (unique per row) and one float value column, a
scalar or a fixed-length vector. Every node renders itself as one SELECT over its
inputs' common table expressions (CTEs), the same text for every dialect except the few
spellings in `dialect.py`.

Reverse mode walks the plan from the loss back to the parameters. The gradient of a node
is a relation with the node's keys (rows absent from it have gradient zero), and each
node turns its own gradient into one contribution per differentiated input (the
relation-Jacobian products of Tang et al., ICML 2023):

    map          one join of the input with the gradient (none if the kernel is linear)
    join         joins of the gradient with the inputs the kernel's VJP reads, and an
                 aggregation back to the input's keys unless the join is one-to-one there
    aggregation  sum: the gradient of the group, repeated on each of its rows (handed on
                 as a `Broadcast`, so the consumer joins it in with the rows it reads
                 anyway); mean: the same divided by the group's size; max/min: the
                 rows that attain the extremum share the gradient equally (ties split,
                 an element of the Clarke subdifferential, the convention of
                 chainrule's np.max), one more join with the result
    rename       none (the keys are renamed back)

Only nodes that lead to a parameter are differentiated; a node with several consumers
sums their contributions once; every node's SQL is a CTE referenced by name, so shared
subqueries are computed once (DuckDB materializes CTEs used more than once).
"""
from __future__ import annotations

import itertools
import re

from .dialect import check_identifier
from .errors import RelationalError
from .kernel import F64, Expr, Kernel, input_expr

VALUE = "cr_value"


def _keys(keys, what) -> tuple:
    keys = (keys,) if isinstance(keys, str) else tuple(keys)
    for k in keys:
        check_identifier(k, f"{what} key column")
    if len(set(keys)) != len(keys):
        raise RelationalError(f"{what} keys {keys} repeat a column")
    return keys


class Relation:
    """A relational expression: integer `keys`, a float value of `width` (None: scalar).

    Build programs with `map`, `join`, `sum`/`mean`/`max`/`min` and `rename`; `fetch()`
    runs it, `sql()` shows the query."""

    def __init__(self, db, keys, width, inputs=()):
        self.db = db
        self.keys = tuple(keys)
        self.width = width
        self.inputs = tuple(inputs)
        for r in self.inputs:
            if r.db is not db:
                raise RelationalError("relations of different connections cannot be "
                                      "combined; load the data into one database")

    # ---- building programs
    def map(self, kernel) -> "Relation":
        """Applies kernel(value) to every row (a selection with a kernel)."""
        return Map(self, kernel)

    def join(self, other, on, kernel, missing="error") -> "Relation":
        """Rows of both with equal `on` keys, valued kernel(self.value, other.value)."""
        return Join(self, other, on, kernel, missing)

    def sum(self, by=()):
        """Sums values over the keys not in `by`."""
        return Aggregate(self, by, "sum")

    def mean(self, by=()):
        return Aggregate(self, by, "mean")

    def max(self, by=()):
        """Maximum per group; its gradient splits equally among tied rows."""
        return Aggregate(self, by, "max")

    def min(self, by=()):
        """Minimum per group; its gradient splits equally among tied rows."""
        return Aggregate(self, by, "min")

    def rename(self, mapping: dict) -> "Relation":
        """Renames key columns, {old: new}, e.g. to join an edge list on its source."""
        return Rename(self, mapping)

    # ---- running
    def sql(self) -> str:
        """The query that computes this relation, in the connection's dialect."""
        return str(self.query())

    def query(self) -> "Query":
        b = SQLBuilder(self.db.dialect)
        name = b.node(self)
        return b.finish(f"SELECT * FROM {name}" + _order_by(b.dialect, self.keys))

    def fetch(self) -> dict:
        """Runs the query: {key: int array, ..., "value": float array (rows[, width])}."""
        return self.db.fetch(self)

    def item(self) -> float:
        """The value of a relation without keys (e.g. a loss)."""
        if self.keys:
            raise RelationalError(f"item() needs a relation without keys; this one has "
                                  f"keys {self.keys}: aggregate it first, e.g. .sum()")
        return float(self.fetch()["value"][0])

    # ---- node interface
    def forward_sql(self, b: "SQLBuilder") -> str:
        raise NotImplementedError

    def vjp_sql(self, b: "SQLBuilder", argnum: int, grad) -> "str | Broadcast":
        """SELECT of the contribution of this node's gradient (a CTE name, or a
        Broadcast) to the gradient of input `argnum`."""
        raise NotImplementedError

    def __repr__(self):
        if isinstance(self, Scan):
            return f"table {self.table!r}"
        return (f"{type(self).__name__}(keys={self.keys}, "
                f"value={'scalar' if self.width is None else f'vector[{self.width}]'})")


class Gradient(Relation):
    """d loss / d param as a relation keyed like param (zero where the gradient does not
    reach). It can be fetched, printed and used in further plans, but not
    differentiated again."""

    def __init__(self, loss, param):
        if not isinstance(param, Parameter):
            raise RelationalError(f"grad(wrt=...) takes db.parameter(...) relations, got "
                                  f"{param!r}")
        self.loss, self.param = loss, param
        super().__init__(loss.db, param.keys, param.width, [loss, param])

    def query(self):
        return gradient_sql(self.loss, self.param)

    def forward_sql(self, b):
        return f"SELECT * FROM ({self.sql()}) AS s"

    def vjp_sql(self, b, argnum, grad):
        raise RelationalError("a gradient relation cannot be differentiated again")


class Scan(Relation):
    """A table (or view) of the database: key columns and a value column."""

    def __init__(self, db, table, keys, value, width):
        super().__init__(db, _keys(keys, f"table {table!r}"), width)
        self.table = check_identifier(table, "table name")
        self.value = check_identifier(value, "value column")
        if self.value in self.keys:
            raise RelationalError(f"table {table!r}: column {value!r} is both a key and "
                                  f"the value")

    def forward_sql(self, b):
        q = b.dialect.q
        value = q(self.value) if self.width else f"CAST({q(self.value)} AS DOUBLE)"
        return (f"SELECT {_cols(b, self.keys)}{value} AS {VALUE} "
                f"FROM {q(self.table)}")


class Parameter(Scan):
    """A trainable table. It is created on first use from `domain` (a relation whose
    key columns include the parameter's, or a dict of key arrays) or, without one, from
    the keys of the first relation it is joined with on all its keys; `init` is a float
    or a function (rng, shape) -> array."""

    def __init__(self, db, table, keys, value, width, init, domain, seed):
        super().__init__(db, table, keys, value, width)
        self.init, self.domain, self.seed = init, domain, seed


class Map(Relation):
    def __init__(self, child, kernel):
        self.kernel = Kernel(kernel, [child.width])
        super().__init__(child.db, child.keys, self.kernel.out_width, [child])

    def forward_sql(self, b):
        c = b.node(self.inputs[0])
        expr = self.kernel.value_sql(b.dialect, [_value(b, "c", self.inputs[0])])
        return (f"SELECT {_cols(b, self.keys, 'c')}{expr.as_sql(b.dialect)} AS {VALUE} "
                f"FROM {c} AS c")

    def vjp_sql(self, b, argnum, grad):
        child = self.inputs[0]
        ct = _value(b, "g", self)
        expr = self.kernel.vjp_sql(b.dialect, [_value(b, "c", child)], ct, 0)
        if isinstance(grad, Broadcast):      # rows come from the input itself
            source = f"{b.node(child)} AS c" + _join(b, grad.name, "g", grad.by, "c")
            keys_from = "c"
        else:
            reads_input = 0 in self.kernel.vjp_uses(0)
            source = f"{grad} AS g" + (_join(b, b.node(child), "c", child.keys, "g")
                                       if reads_input else "")
            keys_from = "g"
        return (f"SELECT {_cols(b, child.keys, keys_from)}{expr.as_sql(b.dialect)} "
                f"AS {VALUE} FROM {source}")


class Join(Relation):
    def __init__(self, left, right, on, kernel, missing="error"):
        on = _keys(on, "join")
        shared = set(left.keys) & set(right.keys)
        if set(on) != shared:
            raise RelationalError(
                f"join on {on}: the inputs share the key columns {tuple(sorted(shared))} "
                f"(left {left.keys}, right {right.keys}); join on exactly the shared "
                f"keys, and rename() the others apart")
        if missing not in ("error", "drop"):
            raise RelationalError(f"missing={missing!r}: use 'error' (unmatched rows are "
                                  f"reported) or 'drop' (they are left out of the join)")
        self.on, self.missing = on, missing
        self.kernel = Kernel(kernel, [left.width, right.width])
        for param, partner in ((left, right), (right, left)):
            if isinstance(param, Parameter) and param.domain is None \
                    and set(param.keys) <= set(on):
                param.domain = partner
        keys = left.keys + tuple(k for k in right.keys if k not in on)
        super().__init__(left.db, keys, self.kernel.out_width, [left, right])

    def forward_sql(self, b):
        left, right = self.inputs
        lname, rname = b.node(left), b.node(right)
        expr = self.kernel.value_sql(b.dialect, [_value(b, "l", left), _value(b, "r", right)])
        extra = [k for k in right.keys if k not in self.on]
        cols = _cols(b, left.keys, "l") + _cols(b, extra, "r")
        return (f"SELECT {cols}{expr.as_sql(b.dialect)} AS {VALUE} FROM {lname} AS l"
                + _join(b, rname, "r", self.on, "l"))

    def vjp_sql(self, b, argnum, grad):
        side = self.inputs[argnum]
        uses = self.kernel.vjp_uses(argnum)
        aliases = ("l", "r")
        expr = self.kernel.vjp_sql(b.dialect, [_value(b, a, r) for a, r in
                                               zip(aliases, self.inputs)],
                                   _value(b, "g", self), argnum)
        if isinstance(grad, Broadcast):
            source, keys_from = self._rows_with(b, grad, uses)
        else:                                # the gradient's rows are the join's rows
            source, keys_from = f"{grad} AS g", {k: "g" for k in self.keys}
            for i, rel in enumerate(self.inputs):
                if i in uses:
                    source += _join(b, b.node(rel), aliases[i], rel.keys, "g")
        if set(side.keys) == set(self.keys):
            return (f"SELECT {_cols(b, side.keys, keys_from)}{expr.as_sql(b.dialect)} "
                    f"AS {VALUE} FROM {source}")
        return _sum_by(b, expr, side.keys, keys_from, source)

    def _rows_with(self, b, grad, uses):
        """FROM clause enumerating the join's rows with a broadcast gradient attached,
        and the alias holding each key. An input the VJP does not read is left out
        when its keys are the join keys and every row is known to have its partner
        (missing='error': the check has proved it), so a many-to-one join costs one
        join with the gradient instead of three."""
        needed = [i in uses or not (self.missing == "error"
                                    and set(self.inputs[i].keys) == set(self.on))
                  for i in (0, 1)]
        if not any(needed):
            needed[0 if set(self.inputs[0].keys) == set(self.keys) else 1] = True
        aliases = ("l", "r")
        first = needed.index(True)
        source = f"{b.node(self.inputs[first])} AS {aliases[first]}"
        if all(needed):
            source += _join(b, b.node(self.inputs[1]), "r", self.on, "l")
        owner = {}
        for i in (1, 0):                     # keys of the left input read from it
            if needed[i]:
                owner.update({k: aliases[i] for k in self.inputs[i].keys})
        return source + _join(b, grad.name, "g", grad.by, owner), owner


class Aggregate(Relation):
    def __init__(self, child, by, how):
        by = _keys(by, f"{how} by")
        if not set(by) <= set(child.keys):
            raise RelationalError(f"{how}(by={by}): the relation's keys are {child.keys}; "
                                  f"group by a subset of them")
        if how in ("max", "min") and child.width is not None:
            raise RelationalError(f"{how} of vector values is not supported; map the "
                                  f"vectors to scalars first")
        self.by, self.how = by, how
        super().__init__(child.db, by, child.width, [child])

    def forward_sql(self, b):
        c = b.node(self.inputs[0])
        v = _value(b, "c", self.inputs[0])
        if self.how == "sum":
            expr = lanewise(lambda x: f"COALESCE(SUM({x}), {b.dialect.float_literal(0)})", v)
        else:
            fn = {"mean": "AVG", "max": "MAX", "min": "MIN"}[self.how]
            expr = lanewise(lambda x: f"{fn}({x})", v)
        return (f"SELECT {_cols(b, self.by, 'c')}{expr.as_sql(b.dialect)} AS {VALUE} "
                f"FROM {c} AS c" + _group_by(b, self.by, "c"))

    def vjp_sql(self, b, argnum, grad):
        if self.how == "sum":                # every row of a group gets its gradient
            return grad if isinstance(grad, Broadcast) else Broadcast(grad, self.by)
        grad = b.rows(self, grad)
        child = self.inputs[0]
        c = b.node(child)
        g = _value(b, "g", self)
        partition = f"OVER ({_partition(b, self.by, 'c')})"
        source = f"{c} AS c" + _join(b, grad, "g", self.by, "c")
        if self.how == "mean":
            expr = lanewise(lambda x: f"({x} / COUNT(*) {partition})", g)
        else:
            source += _join(b, b.node(self), "o", self.by, "c")
            hit = f"c.{VALUE} = o.{VALUE}"
            zero = b.dialect.float_literal(0)
            expr = Expr(F64, text=f"((CASE WHEN {hit} THEN g.{VALUE} ELSE {zero} END) / "
                                  f"SUM(CASE WHEN {hit} THEN 1 ELSE 0 END) {partition})")
        return (f"SELECT {_cols(b, child.keys, 'c')}{expr.as_sql(b.dialect)} AS {VALUE} "
                f"FROM {source}")


class Rename(Relation):
    def __init__(self, child, mapping):
        for old, new in mapping.items():
            if old not in child.keys:
                raise RelationalError(f"rename: {old!r} is not a key of the relation "
                                      f"(keys {child.keys})")
            check_identifier(new, "new key name")
        self.mapping = dict(mapping)
        keys = tuple(self.mapping.get(k, k) for k in child.keys)
        super().__init__(child.db, _keys(keys, "renamed"), child.width, [child])

    def forward_sql(self, b):
        c = b.node(self.inputs[0])
        return self._select(b, c, self.inputs[0].keys, self.keys)

    def vjp_sql(self, b, argnum, grad):
        return self._select(b, b.rows(self, grad), self.keys, self.inputs[0].keys)

    def _select(self, b, source, old, new):
        q = b.dialect.q
        cols = "".join(f"s.{q(o)} AS {q(n)}, " for o, n in zip(old, new))
        return f"SELECT {cols}s.{VALUE} FROM {source} AS s"


# --------------------------------------------------------------------------- SQL helpers

def _qualified(b, k, alias) -> str:
    """Column k of `alias` (a table alias, a dict key -> alias, or None)."""
    alias = alias.get(k) if isinstance(alias, dict) else alias
    return f"{alias}.{b.dialect.q(k)}" if alias else b.dialect.q(k)


def _cols(b, keys, alias=None) -> str:
    """`a.k1, a.k2, ` (a trailing separator so the value column can follow)."""
    return "".join(f"{_qualified(b, k, alias)}, " for k in keys)


def _value(b, alias, rel) -> Expr:
    return input_expr(f"{alias}.{VALUE}", rel.width, b.dialect)


def _join(b, source, alias, keys, other) -> str:
    """` JOIN source AS alias ON alias.k = other.k ...` (a cross join without keys)."""
    if not keys:
        return f" CROSS JOIN {source} AS {alias}"
    cond = " AND ".join(f"{_qualified(b, k, alias)} = {_qualified(b, k, other)}" for k in keys)
    return f" JOIN {source} AS {alias} ON {cond}"


def _group_by(b, keys, alias) -> str:
    return (" GROUP BY " + ", ".join(_qualified(b, k, alias) for k in keys)) if keys else ""


def _partition(b, keys, alias) -> str:
    return ("PARTITION BY " + ", ".join(f"{alias}.{b.dialect.q(k)}" for k in keys)) if keys else ""


def _order_by(dialect, keys) -> str:
    return (" ORDER BY " + ", ".join(dialect.q(k) for k in keys)) if keys else ""


def lanewise(fn, *exprs) -> Expr:
    """fn applied to the SQL of the expressions, lane by lane for vectors."""
    width = max((len(e.lanes) for e in exprs if e.lanes is not None), default=None)
    if width is None:
        return Expr(F64, text=fn(*[e.text for e in exprs]))
    return Expr(F64, lanes=[fn(*[e.lane(k) for e in exprs]) for k in range(width)])


def _sum_by(b, expr: Expr, keys, alias, source) -> str:
    """SELECT keys, SUM(expr) FROM source GROUP BY keys (lane by lane for vectors)."""
    total = lanewise(lambda x: f"COALESCE(SUM({x}), {b.dialect.float_literal(0)})", expr)
    return (f"SELECT {_cols(b, keys, alias)}{total.as_sql(b.dialect)} AS {VALUE} "
            f"FROM {source}" + _group_by(b, keys, alias))


class Broadcast:
    """A node's gradient that is the gradient `name` (keyed by `by`) repeated on every
    row of the node, as the gradient of a sum gives it. Consumers that enumerate the
    node's rows from its inputs anyway join it directly, and no CTE of the node's
    gradient is formed."""

    def __init__(self, name, by):
        self.name, self.by = name, tuple(by)


class SQLBuilder:
    """Collects CTEs: each plan node once (by identity), each gradient once."""

    def __init__(self, dialect):
        self.dialect = dialect
        self.ctes: dict = {}
        self.scans: set = set()
        self.names: dict = {}
        self.counter = itertools.count(1)

    def add(self, prefix, sql) -> str:
        name = f"cr_{prefix}{next(self.counter)}"
        self.ctes[name] = sql
        return name

    def node(self, rel) -> str:
        """The CTE name of a node's forward value (defined on first use)."""
        if rel not in self.names:
            self.names[rel] = self.add("n", rel.forward_sql(self))
            if isinstance(rel, Scan):
                self.scans.add(self.names[rel])
        return self.names[rel]

    def rows(self, rel, grad) -> str:
        """A CTE of the node's gradient row by row (a Broadcast made explicit)."""
        if not isinstance(grad, Broadcast):
            return grad
        return self.add("g", f"SELECT {_cols(self, rel.keys, 'c')}g.{VALUE} FROM "
                             f"{self.node(rel)} AS c" + _join(self, grad.name, "g", grad.by, "c"))

    def finish(self, final_sql) -> "Query":
        return Query(self.dialect, dict(self.ctes), final_sql, self.scans)


class Query:
    """CTEs and a final SELECT. `str()` gives one statement (CTEs used more than once
    marked MATERIALIZED where the dialect has it); `shared` names those CTEs, which an
    engine without materialized CTEs (Spark) computes once as cached views. Table
    scans (`scans`) are never copied: the table is there already."""

    def __init__(self, dialect, ctes: dict, final: str, scans=()):
        self.dialect, self.ctes, self.final, self.scans = dialect, ctes, final, set(scans)
        texts = list(ctes.values()) + [final]
        self.shared = [name for name in ctes if name not in self.scans
                       and sum(len(re.findall(rf"\b{name}\b", t)) for t in texts) > 1]

    def statement(self, ctes=None) -> str:
        ctes = self.ctes if ctes is None else ctes
        if not ctes:
            return self.final
        mat = lambda name: self.dialect.materialized() if name in self.shared else ""
        body = ",\n".join(f"{name} AS {mat(name)}(\n  {sql}\n)" for name, sql in ctes.items())
        return f"WITH {body}\n{self.final}"

    __str__ = statement

    def renamed(self, suffix) -> "Query":
        """The same query with every CTE name suffixed (for session-wide views)."""
        sub = lambda text: re.sub(r"\b(cr_[ng]\d+)\b", rf"\1_{suffix}", text)
        return Query(self.dialect, {sub(n): sub(s) for n, s in self.ctes.items()},
                     sub(self.final), {sub(n) for n in self.scans})


# --------------------------------------------------------------------------- reverse mode

def nodes_of(root) -> list:
    """The plan's nodes, inputs before the nodes that use them."""
    order, seen = [], set()

    def visit(r):
        if r in seen:
            return
        seen.add(r)
        for i in r.inputs:
            visit(i)
        order.append(r)
    visit(root)
    return order


def backward(b: SQLBuilder, root: Relation, wrt) -> dict:
    """CTE names of d root / d node for the nodes between root and the parameters
    `wrt` that the gradient reaches."""
    if root.keys or root.width is not None:
        raise RelationalError(f"the gradient needs a scalar relation without keys (a "
                              f"loss); this one has keys {root.keys}: aggregate it, "
                              f"e.g. .sum() or .mean()")
    order = nodes_of(root)
    targets = set(wrt)
    leads = set()
    for r in order:
        if r in targets or any(i in leads for i in r.inputs):
            leads.add(r)
    contributions = {r: [] for r in order}
    grads = {root: b.add("g", f"SELECT {b.dialect.float_literal(1.0)} AS {VALUE}")}
    for r in reversed(order):
        if r not in leads:
            continue
        if r is not root:
            parts = contributions[r]
            if not parts:
                continue
            if len(parts) == 1:
                grads[r] = parts[0] if isinstance(parts[0], Broadcast) else b.add("g", parts[0])
            else:
                grads[r] = b.add("g", _accumulate(b, r, [
                    f"SELECT * FROM {b.rows(r, p)}" if isinstance(p, Broadcast) else p
                    for p in parts]))
        for i, child in enumerate(r.inputs):
            if child in leads:
                contributions[child].append(r.vjp_sql(b, i, grads[r]))
    return grads


def _accumulate(b, rel, parts) -> str:
    union = " UNION ALL ".join(f"({p})" for p in parts)
    return _sum_by(b, _value(b, "u", rel), rel.keys, "u", f"({union}) AS u")


def gradient_sql(root, param, value_sql_of=None, loss_column=False) -> "Query":
    """The query of d root / d param over all of param's rows (zero where the gradient
    does not reach). `value_sql_of(param_alias, grad_expr)` maps the gradient to the
    value column written (default: the gradient itself); `loss_column` adds the loss."""
    b = SQLBuilder(root.db.dialect)
    grads = backward(b, root, [param])
    p = b.node(param)
    d = b.dialect
    zero = d.float_literal(0)
    if param in grads:
        on = " AND ".join(f"p.{d.q(k)} = g.{d.q(k)}" for k in param.keys) or "TRUE"
        source = f"{p} AS p LEFT JOIN {b.rows(param, grads[param])} AS g ON {on}"
        grad = lanewise(lambda x: f"COALESCE({x}, {zero})", _value(b, "g", param))
    else:
        source = f"{p} AS p"
        grad = Expr(F64, text=zero) if param.width is None else Expr(F64, lanes=[zero] * param.width)
    value = value_sql_of(_value(b, "p", param), grad) if value_sql_of else grad
    extra = f", (SELECT {VALUE} FROM {b.node(root)}) AS cr_loss" if loss_column else ""
    return b.finish(f"SELECT {_cols(b, param.keys, 'p')}{value.as_sql(d)} AS "
                    f"{d.q(param.value)}{extra} FROM {source}" + _order_by(d, param.keys))
