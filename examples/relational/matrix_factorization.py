"""Matrix factorization of a ratings table: user and item factor relations (vectors)
trained in the database.

    python examples/relational/matrix_factorization.py            # small, seconds
    python examples/relational/matrix_factorization.py --large    # 10^6 ratings
    python examples/relational/matrix_factorization.py --engine spark
"""
import time

import numpy as np

from chainrule import relational as R
from common import connect, parse

args = parse(__doc__.splitlines()[0], small=dict(users=200, items=100, ratings=3000, rank=4),
             large=dict(users=50_000, items=10_000, ratings=1_000_000, rank=8))
size = args.size
db = connect(R, args)
rng = np.random.default_rng(0)
U_true = rng.standard_normal((size["users"], size["rank"]))
V_true = rng.standard_normal((size["items"], size["rank"]))
pairs = np.unique(np.stack([rng.integers(0, size["users"], size["ratings"]),
                            rng.integers(0, size["items"], size["ratings"])], 1), axis=0)
u, i = pairs.T
r = np.sum(U_true[u] * V_true[i], 1) + 0.1 * rng.standard_normal(len(u))
ratings = db.load("ratings", {"u": u, "i": i, "r": r}, keys=("u", "i"), value="r")

rank, lam = size["rank"], 1e-3
U = db.parameter("U", keys="u", width=rank, init=R.normal(0.3), seed=1)
V = db.parameter("V", keys="i", width=rank, init=R.normal(0.3), seed=2)
user_rows = R.join(ratings, U, on="u", kernel=lambda r, u: u)         # U[u] per rating
pred = R.join(user_rows, V, on="i", kernel=lambda a, b: np.dot(a, b))
mse = R.join(pred, ratings, on=("u", "i"), kernel=lambda p, r: (p - r) ** 2).mean()
reg = R.join(U.map(lambda x: np.dot(x, x)).sum(), V.map(lambda x: np.dot(x, x)).sum(),
             on=(), kernel=lambda a, b: a + b)
loss = R.join(mse, reg, on=(), kernel=lambda m, s: m + lam * s)

t = time.perf_counter()
losses = R.fit(loss, params=[U, V], lr=20.0 if not args.large else 200.0,
               steps=args.steps or 40)
print(f"{len(losses)} steps in {time.perf_counter() - t:.1f} s: loss {losses[0]:.4f} -> "
      f"{losses[-1]:.4f}")
