"""SQL dialects: the few places where DuckDB and Spark SQL spell things differently.

Everything else in the generated SQL is common to both. Identifiers are validated here
(letters, digits and underscores, not starting with a digit) and always quoted. Data
and user options (learning rates, initial values) never enter SQL text: they travel
as named parameters (`param`) or as loaded tables. The only numbers written into SQL
are a kernel's own constants, formatted from Python floats.
"""
from __future__ import annotations

import math
import re

from .errors import InvalidIdentifierError

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
RESERVED_PREFIX = "cr_"


def check_identifier(name, what="name") -> str:
    """The name itself if it is a plain identifier; otherwise a clear error."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise InvalidIdentifierError(
            f"{what} {name!r} is not a plain SQL identifier: use 1 to 63 letters, digits "
            f"or underscores, not starting with a digit (names are quoted in SQL, but "
            f"anything else is refused to rule out injection)")
    if name.lower().startswith(RESERVED_PREFIX):
        raise InvalidIdentifierError(
            f"{what} {name!r} starts with {RESERVED_PREFIX!r}, which chainrule reserves "
            f"for its own columns and tables; rename it")
    return name


class Dialect:
    name: str
    quote_char: str

    def q(self, name: str) -> str:
        """A quoted identifier (validated before it gets here)."""
        return f"{self.quote_char}{name}{self.quote_char}"

    def float_literal(self, x) -> str:
        x = float(x)
        if math.isnan(x):
            return self.special_float("NaN")
        if math.isinf(x):
            return self.special_float("Infinity" if x > 0 else "-Infinity")
        return self.finite_float(repr(x))

    def element(self, array_sql: str, k: int) -> str:
        """Element k (0-based) of an array column."""
        raise NotImplementedError

    def array(self, items) -> str:
        raise NotImplementedError

    def param(self, name: str) -> str:
        raise NotImplementedError

    def length(self, array_sql: str) -> str:
        raise NotImplementedError

    def log1p(self, x: str) -> str:
        return f"ln(1 + {x})"

    def materialized(self) -> str:
        return ""


class DuckDBDialect(Dialect):
    name = "duckdb"
    quote_char = '"'

    def special_float(self, text):
        return f"CAST('{text}' AS DOUBLE)"

    def finite_float(self, text):
        return f"CAST({text} AS DOUBLE)"

    def element(self, array_sql, k):
        return f"{array_sql}[{k + 1}]"

    def array(self, items):
        return "[" + ", ".join(items) + "]::DOUBLE[]"

    def param(self, name):
        return f"${name}"

    def length(self, array_sql):
        return f"len({array_sql})"

    def materialized(self):
        return "MATERIALIZED "


class SparkDialect(Dialect):
    name = "spark"
    quote_char = "`"

    def special_float(self, text):
        return f"CAST('{text}' AS DOUBLE)"

    def finite_float(self, text):
        return f"CAST({text} AS DOUBLE)"

    def element(self, array_sql, k):
        return f"element_at({array_sql}, {k + 1})"

    def array(self, items):
        return "array(" + ", ".join(f"CAST({i} AS DOUBLE)" for i in items) + ")"

    def param(self, name):
        return f":{name}"

    def length(self, array_sql):
        return f"size({array_sql})"

    def log1p(self, x):
        return f"log1p({x})"
