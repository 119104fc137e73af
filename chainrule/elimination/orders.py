"""Elimination orders: the classical rules and searches, on a `Topology`.

Every function returns a list of 1-based vertex numbers naming each non-output vertex
once. `forward` and `reverse` are forward- and reverse-mode accumulation; `markowitz`
eliminates, at every step, the vertex that is cheapest to eliminate now (lowest vertex
number breaks ties). The searches start from the best of those and improve on it within
a time budget; all randomness comes from `seed`.
"""
from __future__ import annotations

import math
import random
import sys
import time

from ..core.errors import ChainruleError
from .engine import Elimination, Topology, order_cost

#: Largest number of eliminable vertices for the exact search (2^n subsets), and the
#: size up to which "auto" uses it.
EXACT_LIMIT = 22
AUTO_EXACT_LIMIT = 12


def forward(topo: Topology, free_constants=False, **_) -> list:
    return topo.eliminable()


def reverse(topo: Topology, free_constants=False, **_) -> list:
    return topo.eliminable()[::-1]


def markowitz(topo: Topology, free_constants=False, **_) -> list:
    """Greedy: always the vertex with the cheapest elimination now, lowest index first."""
    return _greedy(Elimination(topo, free_constants), topo, topo.eliminable(), depth=1)


def greedy(topo: Topology, free_constants=False, depth=2, width=6, **_) -> list:
    """Markowitz with look-ahead: among the `width` cheapest vertices, the one whose
    elimination followed by `depth - 1` greedy steps costs least."""
    return _greedy(Elimination(topo, free_constants), topo, topo.eliminable(), depth, width)


def _greedy(state, topo, remaining, depth=1, width=6) -> list:
    remaining, order = list(remaining), []
    while remaining:
        ranked = sorted(remaining, key=lambda v: (state.price(topo.node(v)), v))
        if depth > 1 and len(ranked) > 1:
            best = min(ranked[:width], key=lambda v: (
                _lookahead(state, topo, remaining, v, depth), v))
        else:
            best = ranked[0]
        order.append(best)
        remaining.remove(best)
        state.eliminate(topo.node(best))
    return order


def _lookahead(state, topo, remaining, v, depth) -> int:
    trial = state.copy()
    cost = trial.eliminate(topo.node(v))
    rest = [u for u in remaining if u != v]
    for _ in range(depth - 1):
        if not rest:
            break
        u = min(rest, key=lambda u: (trial.price(topo.node(u)), u))
        cost += trial.eliminate(topo.node(u))
        rest.remove(u)
    return cost


def beam(topo: Topology, free_constants=False, width=8, branch=4, budget_s=None, **_) -> list:
    """Beam search over partial orders: each step keeps the `width` cheapest partial
    orders, each extended by its `branch` cheapest next vertices."""
    start = time.perf_counter()
    beams = [(0, [], Elimination(topo, free_constants))]
    eliminable = topo.eliminable()
    for _ in eliminable:
        candidates = []
        for cost, order, state in beams:
            done = set(order)
            rest = [v for v in eliminable if v not in done]
            ranked = sorted(rest, key=lambda v: (state.price(topo.node(v)), v))[:branch]
            for v in ranked:
                candidates.append((cost + state.price(topo.node(v)), order + [v], state, v))
        candidates.sort(key=lambda c: (c[0], c[1]))
        beams, seen = [], set()
        for cost, order, state, v in candidates:
            key = frozenset(order)
            if key in seen:
                continue
            seen.add(key)
            new = state.copy()
            new.eliminate(topo.node(v))
            beams.append((cost, order, new))
            if len(beams) == width:
                break
        if budget_s is not None and time.perf_counter() - start > budget_s:
            best = beams[0]
            return best[1] + _greedy(best[2], topo, [v for v in eliminable
                                                     if v not in set(best[1])])
    return min(beams, key=lambda b: b[2].finish())[1]


def anneal(topo: Topology, free_constants=False, budget_s=5.0, seed=0, start=None,
           progress=False, **_) -> list:
    """Simulated annealing over orders: move one vertex to another place (mostly
    nearby), accept a worse order with probability exp(-increase / temperature), the
    temperature falling geometrically over the time budget. Starts from `start` or the
    best classical order.

    A move only permutes a window of the order, and the graph left after eliminating a
    set of vertices does not depend on the order they went in; so only the window is
    re-priced, from a snapshot of the graph taken at most SNAPSHOT steps before it."""
    rng = random.Random(seed)
    order = list(start) if start is not None else best_classical(topo, free_constants)
    walk = _Walk(topo, free_constants, order)
    best, best_cost = list(order), walk.total()
    t0 = time.perf_counter()
    temp_hi, temp_lo = max(1.0, 0.01 * best_cost), 0.05
    n, steps = len(order), 0
    bar = Progress(budget_s) if progress else None
    while n > 1:
        elapsed = time.perf_counter() - t0
        if elapsed > budget_s:
            break
        temp = temp_hi * (temp_lo / temp_hi) ** (elapsed / budget_s)
        if bar is not None and steps % 4096 == 0:
            bar.update(elapsed, best_cost)
        steps += 1
        a = rng.randrange(n)
        b = rng.randrange(n) if rng.random() < 0.1 else \
            min(n - 1, max(0, a + rng.randint(-12, 12)))
        if a == b:
            continue
        delta = walk.try_move(a, b)
        if delta <= 0 or rng.random() < math.exp(-delta / temp):
            walk.accept()
            if walk.total() < best_cost:
                best, best_cost = walk.order_vertices(), walk.total()
    if bar is not None:
        bar.close(best_cost)
    start_order = list(start) if start is not None else order
    return min([best, start_order], key=lambda o: order_cost(topo, o, free_constants))


class _Walk:
    """An order with per-step costs and graph snapshots, for cheap local moves."""
    SNAPSHOT = 8

    def __init__(self, topo, free_constants, order):
        self.topo = topo
        self.nodes = [topo.node(v) for v in order]
        self.costs = [0] * len(order)
        self.snaps = []
        self.final = 0
        self._replay(0, Elimination(topo, free_constants))
        self.pending = None

    def _replay(self, pos, state):
        """Recomputes step costs and snapshots from `pos` (a snapshot boundary)."""
        del self.snaps[pos // self.SNAPSHOT:]
        for p in range(pos, len(self.nodes)):
            if p % self.SNAPSHOT == 0:
                self.snaps.append(state.copy())
            self.costs[p] = state.eliminate(self.nodes[p])
        before = state.cost
        self.final = state.finish() - before

    def total(self):
        return sum(self.costs) + self.final

    def order_vertices(self):
        return [self.topo.vertex(n) for n in self.nodes]

    def try_move(self, a, b):
        lo, hi = min(a, b), max(a, b)
        window = self.nodes[lo:hi + 1]
        window = window[1:] + window[:1] if a < b else window[-1:] + window[:-1]
        base = lo - lo % self.SNAPSHOT
        state = self.snaps[base // self.SNAPSHOT].copy()
        for p in range(base, lo):
            state.eliminate(self.nodes[p])
        new_costs = [state.eliminate(n) for n in window]
        self.pending = (lo, hi, window, new_costs, base, state)
        return sum(new_costs) - sum(self.costs[lo:hi + 1])

    def accept(self):
        lo, hi, window, new_costs, base, _ = self.pending
        self.nodes[lo:hi + 1] = window
        self.costs[lo:hi + 1] = new_costs
        first = base // self.SNAPSHOT + 1
        last = hi // self.SNAPSHOT
        if first <= last:
            state = self.snaps[base // self.SNAPSHOT].copy()
            for p in range(base, last * self.SNAPSHOT):
                if p % self.SNAPSHOT == 0 and p > base:
                    self.snaps[p // self.SNAPSHOT] = state.copy()
                state.eliminate(self.nodes[p])
            self.snaps[last] = state


def exact(topo: Topology, free_constants=False, budget_s=None, **_) -> list:
    """The optimal order by dynamic programming over the sets of eliminated vertices
    (the graph left after eliminating a set does not depend on the order, only its
    cost does). Exponential: for graphs of at most EXACT_LIMIT eliminable vertices,
    and it stops with an error when it outruns `budget_s`."""
    start = time.perf_counter()
    eliminable = topo.eliminable()
    if len(eliminable) > EXACT_LIMIT:
        raise ChainruleError(
            f"exact search is limited to {EXACT_LIMIT} eliminable vertices (2^n subsets); "
            f"this graph has {len(eliminable)}. Use search='anneal' or 'beam'.")
    index = {v: b for b, v in enumerate(eliminable)}
    best = {0: (0, None, None)}
    frontier = {0: Elimination(topo, free_constants)}
    for _ in eliminable:
        nxt = {}
        for mask, state in frontier.items():
            if budget_s is not None and time.perf_counter() - start > budget_s:
                raise ChainruleError(
                    f"exact search did not finish within {budget_s} s; raise budget_s or "
                    f"use search='anneal'")
            base = best[mask][0]
            for v in eliminable:
                bit = 1 << index[v]
                if mask & bit:
                    continue
                cost = base + state.price(topo.node(v))
                new_mask = mask | bit
                if new_mask not in best or cost < best[new_mask][0]:
                    best[new_mask] = (cost, mask, v)
                    trial = state.copy()
                    trial.eliminate(topo.node(v))
                    nxt[new_mask] = trial
        frontier = nxt
    order, mask = [], (1 << len(eliminable)) - 1
    while mask:
        _, prev, v = best[mask]
        order.append(v)
        mask = prev
    return order[::-1]


def best_classical(topo: Topology, free_constants=False) -> list:
    """The cheapest of forward, reverse and Markowitz."""
    orders = [rule(topo, free_constants) for rule in (forward, reverse, markowitz)]
    return min(orders, key=lambda o: order_cost(topo, o, free_constants))


def search(topo: Topology, method="anneal", budget_s=5.0, seed=0, free_constants=False,
           progress=False) -> list:
    """The best order found by `method` ("greedy", "beam", "anneal", "exact" or "auto":
    exact when small enough, else greedy and beam seeding annealing)."""
    if method == "auto":
        if len(topo.eliminable()) <= AUTO_EXACT_LIMIT:
            return exact(topo, free_constants)
        start = time.perf_counter()
        seeds = [best_classical(topo, free_constants), greedy(topo, free_constants),
                 beam(topo, free_constants, budget_s=budget_s / 4)]
        seed_order = min(seeds, key=lambda o: order_cost(topo, o, free_constants))
        left = max(0.0, budget_s - (time.perf_counter() - start))
        return anneal(topo, free_constants, budget_s=left, seed=seed, start=seed_order,
                      progress=progress)
    if method not in SEARCHES:
        raise ChainruleError(f"unknown search {method!r}; choose one of "
                             f"{', '.join(sorted(SEARCHES))}")
    return SEARCHES[method](topo, free_constants=free_constants, budget_s=budget_s,
                            seed=seed, progress=progress)


ORDERS = {"forward": forward, "reverse": reverse, "markowitz": markowitz}
SEARCHES = {"greedy": greedy, "beam": beam, "anneal": anneal, "exact": exact,
            "auto": None}


class Progress:
    """A one-line progress bar on stderr: elapsed time against the budget, best cost."""

    def __init__(self, budget_s, width=30, stream=None):
        self.budget_s, self.width = budget_s, width
        self.stream = stream or sys.stderr

    def update(self, elapsed, best):
        done = min(1.0, elapsed / self.budget_s) if self.budget_s else 1.0
        fill = int(done * self.width)
        self.stream.write(f"\r[{'#' * fill}{'.' * (self.width - fill)}] "
                          f"{elapsed:5.1f}/{self.budget_s:.0f}s best {best}")
        self.stream.flush()

    def close(self, best):
        self.update(self.budget_s, best)
        self.stream.write("\n")
