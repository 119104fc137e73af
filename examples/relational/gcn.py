"""A two-layer graph convolutional network (Kipf & Welling) on an edge list, with
vector-valued hidden node features, trained in the database.

    python examples/relational/gcn.py            # small, seconds
    python examples/relational/gcn.py --large    # 10^5 nodes, ~10^6 edges
    python examples/relational/gcn.py --engine spark

The graph is a two-community stochastic block model; nodes carry sparse bag-of-words
features as (node, k, x) triples and a fifth of them are labeled. Layer 1 maps features
to hidden vectors and mixes them over normalized edges, layer 2 maps hidden vectors to
class scores and mixes again; the loss is softmax cross-entropy on the labeled nodes.
"""
import time

import numpy as np

from chainrule import relational as R
from common import connect, parse

args = parse(__doc__.splitlines()[0], small=dict(nodes=300, degree=8, features=50, hidden=8),
             large=dict(nodes=100_000, degree=10, features=500, hidden=16))
size = args.size
db = connect(R, args)
rng = np.random.default_rng(0)
n, classes = size["nodes"], 2
community = rng.integers(0, classes, n)

# edges: mostly inside a community, plus self-loops
src = rng.integers(0, n, n * size["degree"])
same = rng.random(len(src)) < 0.9
dst = np.where(same, rng.permutation(n)[rng.integers(0, n, len(src))], rng.integers(0, n, len(src)))
dst = np.where(same & (community[dst] != community[src]),
               rng.choice(np.flatnonzero(community == 0), len(src)) * (community[src] == 0)
               + rng.choice(np.flatnonzero(community == 1), len(src)) * (community[src] == 1), dst)
pairs = np.unique(np.concatenate([np.stack([src, dst], 1), np.stack([dst, src], 1),
                                  np.stack([np.arange(n)] * 2, 1)]), axis=0)
edges = db.load("edges", {"dst": pairs[:, 0], "src": pairs[:, 1], "a": np.ones(len(pairs))},
                keys=("dst", "src"), value="a")

# sparse features that weakly indicate the community
f = size["features"]
present = rng.random((n, f)) < 0.1 + 0.1 * (np.arange(f) % 2 == community[:, None])
present[:, 0] = True                                   # a bias feature: no node is empty
node, k = np.nonzero(present)
x = db.load("node_features", {"node": node, "k": k, "x": np.ones(len(node))},
            keys=("node", "k"), value="x")
train = np.flatnonzero(rng.random(n) < 0.2)
onehot = db.load("train_labels", {"node": np.repeat(train, classes),
                                  "c": np.tile(np.arange(classes), len(train)),
                                  "y": (community[np.repeat(train, classes)]
                                        == np.tile(np.arange(classes), len(train))) * 1.0},
                 keys=("node", "c"), value="y")
train_nodes = onehot.sum(by="node")

# normalized adjacency D^-1/2 (A + I) D^-1/2, computed by the database
degree = edges.sum(by="dst")
scaled = R.join(edges, degree, on="dst", kernel=lambda a, d: a / np.sqrt(d))
norm_edges = R.join(scaled, degree.rename({"dst": "src"}), on="src",
                    kernel=lambda a, d: a / np.sqrt(d))


def propagate(h):
    """sum over in-edges of a[dst, src] * h[src], keyed like h."""
    others = tuple(key for key in h.keys if key != "node")
    messages = R.join(norm_edges, h.rename({"node": "src"}), on="src", kernel=lambda a, v: a * v)
    return messages.sum(by=("dst",) + others).rename({"dst": "node"})


hidden = size["hidden"]
W1 = db.parameter("W1", keys="k", width=hidden, init=R.normal(1 / np.sqrt(f)), seed=1)
W2 = db.parameter("W2", keys="c", width=hidden, init=R.normal(1 / np.sqrt(hidden)), seed=2,
                  domain={"c": np.arange(classes)})
h0 = R.join(x, W1, on="k", kernel=lambda x, w: x * w).sum(by="node")          # vectors
h1 = propagate(h0).map(lambda v: np.maximum(v, 0.0))
logits = propagate(R.join(h1, W2, on=(), kernel=lambda h, w: np.dot(h, w)))   # (node, c)
log_norm = logits.map(np.exp).sum(by="node").map(np.log)
true_score = R.join(logits, onehot, on=("node", "c"), kernel=lambda z, y: z * y,
                    missing="drop").sum()
total_norm = R.join(log_norm, train_nodes, on="node", kernel=lambda l, t: l * t,
                    missing="drop").sum()
loss = R.join(total_norm, true_score, on=(), kernel=lambda a, b: (a - b) / len(train))

t = time.perf_counter()
losses = R.fit(loss, params=[W1, W2], lr=1.0, steps=args.steps or 20)
print(f"{len(losses)} steps in {time.perf_counter() - t:.1f} s: loss {losses[0]:.4f} -> "
      f"{losses[-1]:.4f}")
scores = logits.fetch()
predicted = scores["value"].reshape(n, classes).argmax(1)
test = np.setdiff1d(np.arange(n), train)
print(f"accuracy on unlabeled nodes {np.mean(predicted[test] == community[test]):.3f}")
