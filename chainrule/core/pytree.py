"""Pytrees: nested containers of arrays, flattened to a list of leaves and a structure.

Tuples, lists, dicts (keys in sorted order), namedtuples and None are containers out of
the box; `register_pytree(cls, to_children, from_children)` and
`register_dataclass(cls)` add the user's own. Everything else is a leaf.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

_registry: dict = {}


class TreeDef(NamedTuple):
    """The structure of a pytree without its leaves (hashable, comparable)."""
    kind: Any          # the node type, or None for a leaf
    aux: Any           # static data kept by the node (dict keys, field names)
    children: tuple    # TreeDefs of the children

    @property
    def num_leaves(self) -> int:
        return 1 if self.kind is None else sum(c.num_leaves for c in self.children)

    def __repr__(self):
        if self.kind is None:
            return "*"
        name = getattr(self.kind, "__name__", str(self.kind))
        return f"{name}({', '.join(map(repr, self.children))})"


LEAF = TreeDef(None, None, ())


def register_pytree(cls, to_children: Callable, from_children: Callable) -> None:
    """to_children(obj) -> (children, aux); from_children(aux, children) -> obj."""
    _registry[cls] = (to_children, from_children)


def register_dataclass(cls):
    """Makes a dataclass a pytree node over all its fields; usable as a decorator."""
    names = tuple(f.name for f in dataclasses.fields(cls))
    register_pytree(cls, lambda o: ([getattr(o, n) for n in names], names),
                    lambda aux, ch: cls(**dict(zip(aux, ch))))
    return cls


register_pytree(tuple, lambda t: (list(t), None), lambda _, ch: tuple(ch))
register_pytree(list, lambda t: (list(t), None), lambda _, ch: list(ch))
register_pytree(dict, lambda d: ([d[k] for k in sorted(d)], tuple(sorted(d))),
                lambda keys, ch: dict(zip(keys, ch)))
register_pytree(type(None), lambda _: ([], None), lambda _, ch: None)


def _node(x):
    cls = type(x)
    if cls in _registry:
        return cls, _registry[cls]
    if isinstance(x, tuple) and hasattr(x, "_fields"):       # namedtuple
        return cls, (lambda t: (list(t), None), lambda _, ch, c=cls: c(*ch))
    return None, None


def tree_flatten(tree) -> tuple[list, TreeDef]:
    if type(tree) not in _registry and not isinstance(tree, tuple):     # a leaf, quickly
        return [tree], LEAF
    leaves: list = []

    def go(x):
        cls, rules = _node(x)
        if cls is None:
            leaves.append(x)
            return LEAF
        children, aux = rules[0](x)
        return TreeDef(cls, aux, tuple(go(c) for c in children))

    return leaves, go(tree)


def tree_unflatten(treedef: TreeDef, leaves) -> Any:
    if treedef is LEAF:
        return leaves[0]
    it = iter(leaves)

    def go(td):
        if td.kind is None:
            return next(it)
        cls = td.kind
        rules = _registry.get(cls) or (None, lambda _, ch, c=cls: c(*ch))
        return rules[1](td.aux, [go(c) for c in td.children])

    return go(treedef)


def tree_leaves(tree) -> list:
    return tree_flatten(tree)[0]


def tree_map(fn: Callable, tree, *rest) -> Any:
    leaves, td = tree_flatten(tree)
    others = [tree_flatten(r)[0] for r in rest]
    return tree_unflatten(td, [fn(*xs) for xs in zip(leaves, *others)])
