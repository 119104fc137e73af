"""Test-wide settings.

Hypothesis: CI replays a fixed set of examples (a run there is one shot and must be
reproducible); everywhere else the search is random, so new failures turn up during
development and get pinned with @example.

Templates: a primitive signature normally gets its derivative template the second time
it is met. The suite makes templates at once, so every derivative the tests check runs
through a template (or through the rule, where a signature has none);
`tests/test_tape.py` tests the second-sight rule itself. Templates normally consider
overwriting an argument they alone hold only for large results; the suite lets them
consider it for every size, so every gradient the tests take exercises that path."""
import os

from hypothesis import settings

from chainrule.transforms import templates

settings.register_profile("ci", derandomize=True)
settings.register_profile("dev")
settings.load_profile("ci" if os.environ.get("CI") else "dev")

templates.TEMPLATE_AT_SECOND_SIGHT = False
templates.DONATE_MIN_BYTES = 0
