"""Steady-state timing: warm-up, then the median over adaptively many samples.

A sample times ``number`` back-to-back calls with ``time.perf_counter`` and divides;
``number`` grows only for calls so short that the timer itself would matter. The number
of samples is chosen so that the samples take about ``budget`` seconds, and is never
below ``min_samples``. The garbage collector is off while sampling, as in ``timeit``.
"""

import gc
import math
import statistics
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class TimingConfig:
    budget: float = 0.75  # seconds of samples per variant
    min_samples: int = 5
    max_samples: int = 200
    min_sample_time: float = 2e-4  # below this per call, batch several calls per sample

    @classmethod
    def quick(cls):
        return cls(budget=0.05, min_samples=3, max_samples=20)


@dataclass(frozen=True)
class Timing:
    median: float  # seconds per call
    samples: int
    number: int  # calls per sample


def first_call(call):
    """(result, seconds) of one call."""
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def measure(call, estimate, config):
    """Median seconds per call; ``estimate`` is the time of one warm call."""
    estimate = max(estimate, 1e-9)
    samples = int(min(config.max_samples, max(config.min_samples, config.budget / estimate)))
    number = max(1, math.ceil(config.min_sample_time / estimate))
    number = max(number, round(config.budget / (samples * estimate)))
    times = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(samples):
            start = time.perf_counter()
            for _ in range(number):
                call()
            times.append((time.perf_counter() - start) / number)
    finally:
        if gc_was_enabled:
            gc.enable()
    return Timing(statistics.median(times), samples, number)
