"""The `chainrule` command."""
from __future__ import annotations

import argparse
import sys

import numpy as np


def demo() -> None:
    """A gradient, the traced graph and a Hessian of plain NumPy code."""
    import chainrule as cr

    def loss(w, x, y):
        h = np.tanh(x @ w)
        return np.mean((h - y) ** 2)

    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((5, 3)), rng.standard_normal(3)
    y = rng.standard_normal(5)
    print("loss(w, x, y) = np.mean((np.tanh(x @ w) - y) ** 2)\n")
    print("the traced graph:")
    print(cr.make_graph(loss)(w, x, y))
    value, g = cr.value_and_grad(loss)(w, x, y)
    print(f"\nloss = {value:.6f}")
    print("gradient wrt w:", np.array2string(g, precision=6))
    print("Hessian wrt w:\n", np.array2string(cr.hessian(loss)(w, x, y), precision=6))
    print("\nd^3/dx^3 sin(x) at 1.0 =", cr.grad(cr.grad(cr.grad(np.sin)))(1.0),
          f"(exact: {-np.cos(1.0):.15f})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="chainrule", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="show a gradient, a printed graph and a Hessian")
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo()
    return 0


if __name__ == "__main__":
    sys.exit(main())
