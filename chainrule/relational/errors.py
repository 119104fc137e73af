"""Errors of the relational part. Each names what was wrong and what to do."""
from ..core.errors import ChainruleError, UnsupportedOperationError


class RelationalError(ChainruleError, ValueError):
    """A relational program or its data is not usable as given."""


class InvalidIdentifierError(RelationalError):
    """A table or column name that is not a plain SQL identifier (possible injection)."""


class MalformedRelationError(RelationalError):
    """Data that breaks a relation's contract: duplicate keys, NULLs, missing join keys,
    vectors of the wrong length."""


class UnsupportedKernelError(RelationalError, UnsupportedOperationError):
    """A kernel uses an operation that has no SQL form."""
