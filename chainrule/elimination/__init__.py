"""Jacobians by cross-country elimination.

The linearized graph of a function (one vertex per operation, local partial derivatives
on the edges with their structure) is reduced vertex by vertex; the order decides how
many multiplications that takes. Forward and reverse mode are two particular orders.

    plan = cr.elimination.plan(f, *args, search="anneal", budget_s=5)
    print(plan.report())          # forward / reverse / Markowitz / this order
    J = plan.jacobian(*args)      # runs the order as generated NumPy code
    plan.save("f.json"); cr.elimination.plan(f, *args, order=load_order("f.json"))

Cost model: see `structure` (a scalar vertex costs |predecessors| x |successors|, the
model of the published counts; `model="structured"` makes copies and constants free).
"""
import functools

import numpy as np

from ..core.pytree import tree_flatten, tree_unflatten
from .engine import Topology, order_cost
from .graph import linearized_graph
from .orders import beam, exact, greedy, markowitz, anneal, search
from .plan import Plan, load_order, plan

__all__ = ["Plan", "Topology", "anneal", "beam", "exact", "greedy", "jacobian_function",
           "linearized_graph", "load_order", "markowitz", "order_cost", "plan", "search"]


def jacobian_function(fun, argnums, order=None, budget_s=2.0):
    """What `chainrule.jacobian(fun, argnums, mode="cross_country", order=...)` returns.

    The plan is made once per argument signature (pytree structure, shapes, dtypes) and
    reused; with order=None its order is searched for `budget_s` seconds. When some
    arguments are not differentiated (or keyword arguments are given) their values are
    constants of the traced graph, so the plan is made again at every call, with the
    Markowitz order unless an order is given."""
    cache = {}

    @functools.wraps(fun)
    def jac_fun(*args, **kwargs):
        nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
        nums = tuple(n % len(args) for n in nums)
        diff = [args[n] for n in nums]
        reusable = len(set(nums)) == len(args) and not kwargs

        def restricted(*xs):
            full = list(args)
            for n, x in zip(nums, xs):
                full[n] = x
            return fun(*full, **kwargs)

        leaves, tree = tree_flatten(tuple(diff))
        key = (tree, tuple((np.shape(x), np.result_type(x).str) for x in leaves))
        p = cache.get(key) if reusable else None
        if p is None:
            chosen = order if order is not None or reusable else "markowitz"
            p = plan(restricted, *diff, order=chosen, budget_s=budget_s)
            if reusable:
                cache[key] = p
        rows = [tree_unflatten(tree, row) for row in p.blocks(*diff)]
        if isinstance(argnums, int):
            rows = [r[0] for r in rows]
        return tree_unflatten(p.lin.out_tree, rows)

    return jac_fun
