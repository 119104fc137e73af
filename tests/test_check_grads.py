"""The shared checker must accept correct rules and reject a deliberately wrong one."""
import numpy as np
import pytest

import chainrule as cr
from chainrule.core.primitive import primitive
from chainrule.ops.elementwise import _elementwise_jvp, _shape_of
from chainrule.test_util import check_grads


def _sin_with_rule(partial):
    return primitive("test_sin", np.sin, _shape_of(np.sin),
                     jvp=_elementwise_jvp([lambda t, x, y: partial(t, x)]))


def test_accepts_a_correct_rule():
    good = _sin_with_rule(lambda t, x: t * np.cos(x))
    check_grads(lambda x: np.sum(good.bind(x) ** 2), (np.linspace(-1, 1, 5),), order=2)


def test_rejects_a_wrong_first_derivative():
    wrong = _sin_with_rule(lambda t, x: t * np.cos(x) * 1.01)
    with pytest.raises(AssertionError, match="forward mode, order 1"):
        check_grads(lambda x: wrong.bind(x), (np.linspace(-1, 1, 5),), order=1)


def test_rejects_a_wrong_second_derivative():
    # The right first derivative, but the rule's own derivative is off by 0.1.
    wrong2 = _sin_with_rule(lambda t, x: t * (np.cos(x) + 0.1 * (x - cr.stop_gradient(x))))
    check_grads(lambda x: wrong2.bind(x), (np.array([0.3, 0.7]),), order=1)
    with pytest.raises(AssertionError, match="order 1"):
        check_grads(lambda x: wrong2.bind(x), (np.array([0.3, 0.7]),), order=2)


def test_rejects_wrong_reverse_mode_only():
    from chainrule.core.primitive import transpose_rules
    from chainrule.ops.elementwise import prims
    neg = prims["negative"]
    saved = transpose_rules[neg]
    transpose_rules[neg] = lambda cts, x: [cts[0]]
    try:
        check_grads(lambda x: -x, (np.ones(3),), order=1, modes=("fwd",))
        with pytest.raises(AssertionError, match="reverse mode"):
            check_grads(lambda x: -x, (np.ones(3),), order=1, modes=("rev",))
    finally:
        transpose_rules[neg] = saved
