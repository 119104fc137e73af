"""Hypothesis profiles: CI replays a fixed set of examples (a run there is one shot and
must be reproducible); everywhere else the search is random, so new failures turn up
during development and get pinned with @example."""
import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True)
settings.register_profile("dev")
settings.load_profile("ci" if os.environ.get("CI") else "dev")
