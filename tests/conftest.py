"""Test-wide settings.

Hypothesis: CI replays a fixed set of examples (a run there is one shot and must be
reproducible); everywhere else the search is random, so new failures turn up during
development and get pinned with @example.

The tape: a primitive signature normally gets its VJP template the second time it is
met. The suite makes templates at once, so every derivative the tests check through
`grad`/`vjp`/`jacrev` runs through a template (or the general route where a signature
has no template); `tests/test_tape.py` tests the second-sight rule itself."""
import os

from hypothesis import settings

from chainrule.transforms import tape

settings.register_profile("ci", derandomize=True)
settings.register_profile("dev")
settings.load_profile("ci" if os.environ.get("CI") else "dev")

tape.TEMPLATE_AT_SECOND_SIGHT = False
