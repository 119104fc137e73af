"""The ops spec table (tests/test_ops_spec.py) through jit: every entry's value, its
reverse-mode derivative (order 1) and the forward derivative of that (order 2) equal the
eager (traced) results; and every primitive of chainrule.ops has an emitter."""
import numpy as np
import pytest

import chainrule as cr
from test_ops_spec import SPECS, _fn, fixed_draw

rng = np.random.default_rng(11)
ABSTRACT = [s for s in SPECS if s.abstract]


def assert_close(got, want):
    got_leaves, got_tree = cr.tree_flatten(got)
    want_leaves, want_tree = cr.tree_flatten(want)
    assert got_tree == want_tree
    for g, w in zip(got_leaves, want_leaves):
        assert np.shape(g) == np.shape(w)
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


def random_like(tree):
    return cr.tree_map(lambda x: rng.standard_normal(np.shape(x)), tree)


@pytest.mark.parametrize("spec", ABSTRACT, ids=[s.name for s in ABSTRACT])
def test_spec_under_jit(spec):
    for seed in range(2):
        args, params = spec.gen(fixed_draw(seed))
        f = _fn(spec, params)
        assert_close(cr.jit(f)(*args), cr.vjp(f, *args)[0])
        cts = random_like(f(*args))
        first = lambda *a: cr.vjp(f, *a)[1](cts)
        assert_close(cr.jit(first)(*args), first(*args))
        tangents = random_like(args)
        second = lambda *a: cr.jvp(first, a, tangents)[1]
        assert_close(cr.jit(second)(*args), second(*args))


def test_the_table_is_not_empty():
    assert len(ABSTRACT) > 50


def test_every_primitive_of_the_ops_has_an_emitter():
    from chainrule.codegen.emitters import emitter_of
    from test_ops_spec import _ops_primitives
    missing = sorted(p.name for p in _ops_primitives() if emitter_of(p) is None)
    assert not missing, f"primitives without an emitter (they call back into chainrule): {missing}"
