"""checkpoint: same values and derivatives (both modes, second order), and a linearized
graph that keeps only the block's inputs as residuals instead of its intermediates."""
import numpy as np

import chainrule as cr
from chainrule.test_util import check_grads

rng = np.random.default_rng(0)
WEIGHTS = [rng.standard_normal((4, 4)) / 2 for _ in range(3)]


def block(x):
    for w in WEIGHTS:
        x = np.tanh(w @ x) + 0.1 * x
    return x


def network(x, remat):
    layer = cr.checkpoint(block) if remat else block
    return np.sum(layer(layer(x)) ** 2)


def test_values_and_gradients_equal_the_plain_network():
    x = rng.standard_normal(4)
    np.testing.assert_allclose(network(x, True), network(x, False))
    np.testing.assert_allclose(cr.grad(network)(x, True), cr.grad(network)(x, False),
                               rtol=1e-12)


def test_derivatives_both_modes_second_order():
    check_grads(lambda x: network(x, True), (rng.standard_normal(4),), order=2)


def test_pytree_arguments_and_closures():
    scale = rng.standard_normal(4)
    f = cr.checkpoint(lambda p: {"y": np.sin(p["a"]) * scale + p["b"]})
    p = {"a": rng.standard_normal(4), "b": rng.standard_normal(4)}
    np.testing.assert_allclose(f(p)["y"], np.sin(p["a"]) * scale + p["b"])
    check_grads(lambda p: np.sum(f(p)["y"] ** 2), (p,), order=2)


def residual_elements(graph):
    return sum(np.size(c) for c in graph.consts)


def test_linearization_keeps_only_block_inputs():
    x = rng.standard_normal(4)
    plain = cr.linearize(lambda x: network(x, False), x)[1].graph
    remat = cr.linearize(lambda x: network(x, True), x)[1].graph
    # Plain: every layer keeps its weights and a tanh derivative (3 x (16 + 4) per
    # block); checkpointed: each block keeps its 4 inputs and its 3 weight matrices.
    assert "checkpoint[graph=" in str(remat)
    assert residual_elements(remat) < residual_elements(plain)
    weights = sum(w.size for w in WEIGHTS)
    assert residual_elements(remat) <= weights + 2 * 4 + 4


def test_vmap_and_scan_of_checkpoint():
    xs = rng.standard_normal((3, 4))
    remat = cr.checkpoint(block)
    np.testing.assert_allclose(cr.vmap(remat)(xs), np.stack([block(x) for x in xs]))
    f = lambda x: np.sum(cr.scan(lambda c, _: (remat(c), np.sum(c)), x, length=3)[1])
    check_grads(f, (xs[0],), order=2)
