"""chainrule.lipschitz: power iteration against exact SVDs (dense and convolution),
AutoLip / SeqLip against independent computations, the lower bound, and errors."""
import itertools

import numpy as np
import pytest

import chainrule as cr
from chainrule import lipschitz as lip

def circular_conv_norm(kernel, h, w):
    """Exact norm of a circular 2-D convolution: the largest singular value over the
    frequencies of the kernel's 2-D DFT (Sedghi, Gupta & Long, 2019)."""
    c_out, c_in, kh, kw = kernel.shape
    padded = np.zeros((c_out, c_in, h, w))
    padded[:, :, :kh, :kw] = kernel
    blocks = np.fft.fft2(padded).transpose(2, 3, 0, 1)
    return np.max(np.linalg.svd(blocks, compute_uv=False))


def test_spectral_norm_of_dense_affine_layer_matches_svd_and_reports_residual():
    w = np.random.default_rng(0).standard_normal((20, 30))
    res = lip.spectral_norm(lip.Dense(w, np.ones(20)), (30,), tol=1e-8)
    assert res.converged and res.residual <= 1e-8
    assert res.value == pytest.approx(np.linalg.norm(w, 2), rel=1e-10)
    _, _, vt = np.linalg.svd(w)
    assert abs(vt[0] @ res.vector) == pytest.approx(1.0, abs=1e-6)


def test_iteration_cap_is_reported_as_not_converged():
    w = np.random.default_rng(1).standard_normal((30, 30))
    res = lip.spectral_norm(lambda x: w @ x, 30, tol=1e-12, max_iter=3)
    assert not res.converged and res.iterations == 3 and res.residual > 1e-12
    assert res.value <= np.linalg.norm(w, 2) + 1e-12
    zero = lip.spectral_norm(lambda x: 0.0 * x, (4,))
    assert zero.value == 0.0 and zero.converged


@pytest.mark.parametrize("padding", ["circular", "zeros"])
def test_spectral_norm_of_convolution_matches_exact_values(padding):
    kernel = 0.3 * np.random.default_rng(2).standard_normal((4, 3, 3, 3))
    conv = lip.Conv2D(kernel, (3, 6, 5), padding=padding)
    res = lip.spectral_norm(conv, conv.input_shape, tol=1e-8, max_iter=1500)
    matrix = conv.matrix()
    assert matrix.shape == (4 * 30, 3 * 30)
    assert res.value == pytest.approx(np.linalg.norm(matrix, 2), rel=1e-8)
    if padding == "circular":
        assert res.value == pytest.approx(circular_conv_norm(kernel, 6, 5), rel=1e-8)


def small_relu_net(widths, seed=1):
    r = np.random.default_rng(seed)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [lip.Dense(r.standard_normal((b, a)) / np.sqrt(a), r.standard_normal(b)),
                   lip.relu]
    return layers[:-1]


def test_autolip_is_the_product_of_exact_layer_norms_and_bounds_are_ordered():
    layers = small_relu_net([5, 8, 6, 2])
    norms = [np.linalg.norm(l.weight, 2) for l in layers[0::2]]
    auto = lip.autolip(layers, tol=1e-10)
    assert auto.value == pytest.approx(np.prod(norms), rel=1e-8)
    frob = lip.frobenius_product(layers)
    assert frob.value == pytest.approx(np.prod([np.linalg.norm(l.weight)
                                                for l in layers[0::2]]))
    seq = lip.seqlip(layers)
    starts = np.random.default_rng(4).standard_normal((3, 5))
    low, _ = lip.lower_bound(lip.network(layers), starts, steps=5)
    assert low <= seq.value <= auto.value <= frob.value


def test_seqlip_of_two_layers_is_the_brute_force_maximum_over_patterns():
    layers = small_relu_net([4, 7, 3])
    m1, m2 = layers[0].weight, layers[2].weight
    brute = max(np.linalg.norm(m2 @ np.diag(s) @ m1, 2)
                for s in itertools.product((0, 1), repeat=7))
    assert lip.seqlip(layers).value == pytest.approx(brute, rel=1e-10)
    greedy = lip.seqlip(layers, exact_up_to=0).value
    assert np.linalg.norm(m2 @ m1, 2) - 1e-12 <= greedy <= brute + 1e-12
    assert lip.seqlip(layers[:1]).value == pytest.approx(np.linalg.norm(m1, 2))


def test_seqlip_three_layers_splits_middle_singular_values():
    layers = small_relu_net([3, 4, 4, 2])
    (u1, s1, _), (u2, s2, v2), (_, s3, v3) = [np.linalg.svd(l.weight, full_matrices=False)
                                          for l in layers[0::2]]
    first = max(np.linalg.norm(np.sqrt(s2)[:, None] * v2 @ np.diag(s) @ (u1 * s1), 2)
                for s in itertools.product((0, 1), repeat=4))
    second = max(np.linalg.norm(s3[:, None] * v3 @ np.diag(s) @ (u2 * np.sqrt(s2)), 2)
                 for s in itertools.product((0, 1), repeat=4))
    assert lip.seqlip(layers).value == pytest.approx(first * second, rel=1e-10)


def test_lower_bound_climbs_on_a_smooth_network():
    r = np.random.default_rng(3)
    layers = [lip.Dense(r.standard_normal((6, 2))), lip.tanh, lip.Dense(r.standard_normal((1, 6)))]
    f = lip.network(layers)
    start = np.array([[2.0, -2.0]])
    at_start = lip.spectral_norm(f, (2,), at=start[0]).value
    low, where = lip.lower_bound(f, start, steps=30)
    assert low > 1.05 * at_start
    assert low <= lip.seqlip(layers).value


def test_errors_say_what_to_do():
    dense = lip.Dense(np.ones((2, 2)))
    with pytest.raises(ValueError, match="alternating affine and activation"):
        lip.seqlip([dense, dense])
    with pytest.raises(TypeError, match=r"wrap a function as Affine\(fn, input_shape\)"):
        lip.autolip([np.tanh])
    with pytest.raises(cr.ShapeError, match="same c_in"):
        lip.Conv2D(np.ones((2, 3, 3, 3)), (2, 4, 4))
    with pytest.raises(ValueError, match="padding must be"):
        lip.Conv2D(np.ones((2, 3, 3, 3)), (3, 4, 4), padding="reflect")
    with pytest.raises(ValueError, match="tol > 0"):
        lip.spectral_norm(dense, (2,), tol=0)
    with pytest.raises(cr.ShapeError, match="Use autolip"):
        lip.Affine(lambda x: x, (100, 100)).matrix()
