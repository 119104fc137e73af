"""Small relational models with their dense NumPy twins, shared by the engine tests.

Each builder loads random data into a connection and returns (loss, params, dense)
where dense(*param_arrays) is the same model written with plain NumPy on dense arrays,
and param arrays are indexed by the parameter's key (0..n-1).
"""
import numpy as np

from chainrule import relational as R


def logistic_regression(db, rng, n=7, d=5):
    X = rng.standard_normal((n, d)) * (rng.random((n, d)) < 0.5)
    X[np.arange(n), np.arange(n) % d] = 1.0 + rng.random(n)   # every row and column used
    y = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    i, j = np.nonzero(X)
    db.load("features", {"i": i, "j": j, "x": X[i, j]}, keys=("i", "j"), value="x")
    db.load("labels", {"i": np.arange(n), "y": y}, keys="i", value="y")
    w = db.parameter("w", keys="j", init=R.normal(0.3), seed=1)
    loss = logistic_loss(db, w)

    def dense(w):
        return np.mean(np.logaddexp(0.0, -y * (X @ w)))

    def closed_form_grad(w):
        s = 1.0 / (1.0 + np.exp(y * (X @ w)))
        return X.T @ (-y * s) / n
    return loss, [w], dense, closed_form_grad


def logistic_loss(db, w):
    """The logistic loss over tables 'features' (i, j, x) and 'labels' (i, y)."""
    feats = db.table("features", keys=("i", "j"), value="x")
    labels = db.table("labels", keys="i", value="y")
    z = R.join(feats, w, on="j", kernel=lambda x, w: x * w).sum(by="i")
    return R.join(z, labels, on="i", kernel=lambda z, y: np.logaddexp(0.0, -y * z)).mean()


def matrix_factorization(db, rng, users=5, items=4, rank=3, lam=0.1):
    mask = rng.random((users, items)) < 0.6
    mask[np.arange(users), np.arange(users) % items] = True
    u, i = np.nonzero(mask)
    r = rng.standard_normal(len(u))
    ratings = db.load("ratings", {"u": u, "i": i, "r": r}, keys=("u", "i"), value="r")
    U = db.parameter("U", keys="u", width=rank, init=R.normal(0.5), seed=2)
    V = db.parameter("V", keys="i", width=rank, init=R.normal(0.5), seed=3)
    user_rows = R.join(ratings, U, on="u", kernel=lambda r, u: u)
    pred = R.join(user_rows, V, on="i", kernel=lambda a, b: np.dot(a, b))
    mse = R.join(pred, ratings, on=("u", "i"), kernel=lambda p, r: (p - r) ** 2).mean()
    norms = (U.map(lambda x: np.sum(x * x)).sum(), V.map(lambda x: np.sum(x * x)).sum())
    reg = R.join(*norms, on=(), kernel=lambda a, b: a + b)
    loss = R.join(mse, reg, on=(), kernel=lambda m, s: m + lam * s)

    def dense(U, V):
        P = U @ V.T
        return np.mean((P[u, i] - r) ** 2) + lam * (np.sum(U * U) + np.sum(V * V))
    return loss, [U, V], dense


def gcn(db, rng, nodes=6, feats=4, hidden=3, classes=2):
    X = rng.standard_normal((nodes, feats)) * (rng.random((nodes, feats)) < 0.6)
    X[np.arange(nodes), np.arange(nodes) % feats] = 1.0
    A = (rng.random((nodes, nodes)) < 0.4) * rng.random((nodes, nodes))
    A[np.arange(nodes), np.arange(nodes)] = 1.0                        # self-loops
    Y = np.where(rng.random((nodes, classes)) < 0.5, -1.0, 1.0)
    n, k = np.nonzero(X)
    dst, src = np.nonzero(A)
    x = db.load("node_features", {"node": n, "k": k, "x": X[n, k]}, keys=("node", "k"),
                value="x")
    edges = db.load("edges", {"dst": dst, "src": src, "a": A[dst, src]}, keys=("dst", "src"),
                    value="a")
    c1, c2 = np.nonzero(Y != 0)
    y = db.load("targets", {"node": c1, "c": c2, "y": Y[c1, c2]}, keys=("node", "c"), value="y")
    W1 = db.parameter("W1", keys="k", width=hidden, init=R.normal(0.7), seed=4)
    W2 = db.parameter("W2", keys="c", width=hidden, init=R.normal(0.7), seed=5,
                      domain={"c": np.arange(classes)})

    def propagate(h):        # sum over in-edges of a[dst, src] * h[src], keyed by node
        by = ("dst",) + tuple(key for key in h.keys if key != "node")
        msgs = R.join(edges, h.rename({"node": "src"}), on="src", kernel=lambda a, v: a * v)
        return msgs.sum(by=by).rename({"dst": "node"})

    xw = R.join(x, W1, on="k", kernel=lambda x, w: x * w).sum(by="node")   # vectors
    h1 = propagate(xw).map(lambda v: np.maximum(v, 0.0))
    logits = propagate(R.join(h1, W2, on=(), kernel=lambda h, w: np.dot(h, w)))
    loss = R.join(logits, y, on=("node", "c"),
                  kernel=lambda z, t: np.logaddexp(0.0, -t * z)).mean()

    def dense(W1, W2):
        H1 = np.maximum(A @ (X @ W1), 0.0)
        return np.mean(np.logaddexp(0.0, -Y * (A @ (H1 @ W2.T))))
    return loss, [W1, W2], dense


def dense_param(param, size=None):
    """A parameter's current values as a dense array indexed by its key."""
    got = param.fetch()
    values = got["value"]
    if not param.keys:
        return values[0]
    index = got[param.keys[0]]
    out = np.zeros((size or index.max() + 1,) + values.shape[1:])
    out[index] = values
    return out
