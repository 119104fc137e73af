"""Peak memory of one variant on one workload, measured in a fresh process.

Method. ``tracemalloc`` sees only allocations made through Python's allocator, not the
buffers of BLAS, XLA or PyTorch, so it would flatter exactly the frameworks that matter.
The operating system sees all of them as resident memory. For each variant a child
process (``python -m benchmarks.memory WORKLOAD KIND LABEL``):

1. imports the framework, makes the inputs and builds the derivative;
2. records its resident set size (RSS) as the baseline: inputs in place, nothing run;
3. calls the derivative once (warm-up, trace, compile) and drops the result;
4. resets the kernel's high-water mark of RSS (``/proc/self/clear_refs``, value 5);
5. calls the derivative again and reads the high-water mark (``VmHWM``).

The figure reported is high-water mark minus baseline: the most memory a steady-state
call needs on top of its inputs, including whatever the framework kept from the first
call (caches, pools) but not the transient cost of compiling. It needs Linux (4.0 or
later); elsewhere the column says n/a.
"""

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from .variants import VARIANTS_BY_KEY, Unavailable, prepare
from .workloads import WORKLOADS

SEED = 0
PROC_STATUS = Path("/proc/self/status")
PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field):
    for line in PROC_STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise Unavailable(f"no {field} in the process status")


def _reset_high_water_mark():
    try:
        PROC_CLEAR_REFS.write_text("5")
    except OSError as error:
        raise Unavailable(f"cannot reset the peak RSS: {error}") from None


def measure_here(workload_key, kind, label):
    """Peak extra resident memory of a steady-state call, in MiB (run in a fresh process)."""
    if not PROC_STATUS.exists():
        raise Unavailable("peak RSS needs Linux /proc")
    workload = WORKLOADS[workload_key]
    inputs = workload.inputs(np.random.default_rng(SEED))
    prepared = prepare(VARIANTS_BY_KEY[(kind, label)], workload, inputs)
    gc.collect()
    baseline = _status_kib("VmRSS")
    prepared.call()  # result dropped at once
    gc.collect()
    _reset_high_water_mark()
    result = prepared.call()
    peak = _status_kib("VmHWM")
    del result
    return (peak - baseline) / 1024


def peak_memory_mib(workload_key, kind, label, timeout=900):
    """Run ``measure_here`` in a child process; returns MiB or raises Unavailable. The
    child gets glibc's default settings even under ``--keep-freed-memory``: memory kept
    from the warm-up call would count as memory the measured call needs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", workload_key, kind, label],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
    )
    lines = completed.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = completed.stderr.strip().splitlines()[-1:] or ["no output"]
        raise Unavailable(f"memory probe failed: {tail[0]}") from None
    if "error" in answer:
        raise Unavailable(answer["error"])
    return answer["mib"]


def main(argv):
    workload_key, kind, label = argv
    try:
        answer = {"mib": measure_here(workload_key, kind, label)}
    except Unavailable as error:
        answer = {"error": str(error)}
    except Exception as error:  # reported by the parent as n/a
        answer = {"error": f"{type(error).__name__}: {error}"}
    print(json.dumps(answer))


if __name__ == "__main__":
    main(sys.argv[1:])
