"""Just enough pytree handling (nested dicts, lists and tuples of arrays) for the
benchmark's own bookkeeping: converting inputs and results between frameworks and
comparing results leaf by leaf. Deliberately independent of every framework measured.
"""


def tree_map(fn, tree, *rest):
    """Apply ``fn`` to every leaf of ``tree`` (and the matching leaves of ``rest``)."""
    if isinstance(tree, dict):
        return {key: tree_map(fn, tree[key], *(other[key] for other in rest)) for key in tree}
    if isinstance(tree, (list, tuple)):
        return type(tree)(
            tree_map(fn, item, *(other[i] for other in rest)) for i, item in enumerate(tree)
        )
    return fn(tree, *rest)


def tree_items(tree, path=""):
    """``[(path, leaf), ...]`` in a deterministic order, paths like ``['w1']`` or ``[0]``."""
    if isinstance(tree, dict):
        return [item for key in sorted(tree) for item in tree_items(tree[key], f"{path}[{key!r}]")]
    if isinstance(tree, (list, tuple)):
        return [item for i, sub in enumerate(tree) for item in tree_items(sub, f"{path}[{i}]")]
    return [(path, tree)]
