"""Upper and lower bounds on the Lipschitz constant of trained ReLU networks, after the
synthetic-MLP comparison of Virmaux & Scaman (NeurIPS 2018).

MLPs with 4, 5, 7 and 10 affine layers (width 10) are trained on a synthetic function of
two variables; for each one the example prints the product of Frobenius norms, AutoLip
(per-layer norms by power iteration through JVPs and VJPs), SeqLip (exact maximization
over activation patterns) and a lower bound (the largest Jacobian norm found from data
and random points). The weights differ from the paper's, so the values do; the ratios
AutoLip / SeqLip are what can be compared.

    python examples/lipschitz_mlp.py
"""
import numpy as np

import chainrule as cr
from chainrule import lipschitz as lip

PUBLISHED = {4: (33.04, 21.47), 5: (134.4, 72.87), 7: (294.6, 130.2), 10: (19248.2, 2463.4)}
WIDTH = 10


def target(x):
    return np.sin(np.pi * x[:, 0]) * np.cos(2 * x[:, 1]) + 0.5 * x[:, 0] * x[:, 1]


def init(depth, rng):
    sizes = [2] + [WIDTH] * (depth - 1) + [1]
    return [{"w": rng.standard_normal((b, a)) * np.sqrt(2 / a), "b": np.zeros(b)}
            for a, b in zip(sizes[:-1], sizes[1:])]


def predict(params, x):
    h = x
    for layer in params[:-1]:
        h = np.maximum(h @ layer["w"].T + layer["b"], 0.0)
    return (h @ params[-1]["w"].T + params[-1]["b"])[:, 0]


def mse(params, x, y):
    return np.mean((predict(params, x) - y) ** 2)


def train(params, x, y, steps=400, lr=3e-3):
    """Adam on the mean squared error, full batch."""
    value_and_grad = cr.value_and_grad(mse)
    m = cr.tree_map(np.zeros_like, params)
    v = cr.tree_map(np.zeros_like, params)
    for t in range(1, steps + 1):
        loss, g = value_and_grad(params, x, y)
        m = cr.tree_map(lambda a, b: 0.9 * a + 0.1 * b, m, g)
        v = cr.tree_map(lambda a, b: 0.999 * a + 0.001 * b * b, v, g)
        params = cr.tree_map(
            lambda p, a, b: p - lr * (a / (1 - 0.9 ** t)) / (np.sqrt(b / (1 - 0.999 ** t)) + 1e-8),
            params, m, v)
    return params, loss


def layers_of(params):
    layers = []
    for layer in params:
        layers += [lip.Dense(layer["w"], layer["b"]), lip.relu]
    return layers[:-1]


def main():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (256, 2))
    y = target(x)
    header = (f"{'layers':>6} {'train mse':>9} {'Frobenius':>11} {'AutoLip':>10} "
              f"{'SeqLip':>9} {'lower':>7} | {'Auto/Seq':>8} {'published':>9} | "
              f"{'Seq/lower':>9}")
    print(header)
    print("-" * len(header))
    for depth, (pub_auto, pub_seq) in PUBLISHED.items():
        params, loss = train(init(depth, rng), x, y)
        layers = layers_of(params)
        frob = lip.frobenius_product(layers).value
        auto = lip.autolip(layers, tol=1e-10).value
        seq = lip.seqlip(layers).value
        starts = np.concatenate([x[:100], rng.uniform(-3, 3, (100, 2))])
        low, _ = lip.lower_bound(lip.network(layers), starts, steps=5)
        print(f"{depth:6d} {loss:9.4f} {frob:11.1f} {auto:10.2f} {seq:9.2f} {low:7.2f} | "
              f"{auto / seq:8.2f} {pub_auto / pub_seq:9.2f} | {seq / low:9.2f}")
    print("\nAuto/Seq: how much SeqLip tightens AutoLip here and in the paper's networks. "
          "The lower bound comes from Jacobian norms at data and random points: on ReLU "
          "networks the Jacobian is piecewise constant, so gradient ascent cannot move "
          "and the bound is the best sampled point.")


if __name__ == "__main__":
    main()
