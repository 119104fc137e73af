"""Run the core benchmarks: ``python -m benchmarks.run [--only W1,W3] [--quick] [--markdown FILE]``.

For every workload: check the hand-written derivative against finite differences (a
failure aborts, exit status 2), then for every variant: build it, call it once (the first
call, timed), check its result against the hand-written one, call it again and check
again (a compiled variant now runs from its cache), then time it. A variant whose result
disagrees is reported as WRONG and not timed; the run goes on (or stops at once with
``--fail-fast``) and exits with status 1. A missing framework or feature, or an error
raised by a variant, makes its row n/a with the reason.
"""

import argparse
import os
import sys

import numpy as np

from . import machine, report
from .checks import ReferenceError, compare, verify_reference
from .memory import SEED, peak_memory_mib
from .report import Result, format_seconds
from .timing import TimingConfig, first_call, measure
from .variants import FRAMEWORKS, Unavailable, prepare, variants_for
from .workloads import WORKLOADS


class WrongResult(Exception):
    pass


def _check(result, variant, expected, expected_value, to_numpy):
    if variant.returns_value:
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise WrongResult(f"expected (value, gradient), got {type(result).__name__}")
        value, result = result
        problem = compare(to_numpy(value), np.asarray(expected_value))
        if problem:
            raise WrongResult(f"value: {problem}")
    problem = compare(to_numpy(result), expected)
    if problem:
        raise WrongResult(problem)


def run_variant(workload, variant, inputs, expected, config, with_memory):
    expected_value = workload.make(np)(*inputs) if variant.returns_value else None
    try:
        prepared = prepare(variant, workload, inputs)
        result, first_seconds = first_call(prepared.call)
        _check(result, variant, expected, expected_value, prepared.to_numpy)
        result, warm_seconds = first_call(prepared.call)
        _check(result, variant, expected, expected_value, prepared.to_numpy)
        del result
        timing = measure(prepared.call, warm_seconds, config)
    except WrongResult as wrong:
        return Result(workload, variant, "wrong", str(wrong))
    except Unavailable as missing:
        return Result(workload, variant, "n/a", str(missing))
    except Exception as error:  # noqa: BLE001 - any failure of a variant is reported, not fatal
        return Result(workload, variant, "n/a", f"{type(error).__name__}: {error}")
    outcome = Result(workload, variant, "ok", median=timing.median)
    if variant.compiled:
        outcome.first_call = max(0.0, first_seconds - timing.median)
    if with_memory and workload.measure_memory:
        try:
            outcome.memory = f"{peak_memory_mib(workload.key, variant.kind, variant.label):.0f} MiB"
        except Unavailable as missing:
            outcome.memory = f"n/a ({missing})"
    return outcome


def _progress(result):
    if result.status == "ok":
        extra = f" (first call +{format_seconds(result.first_call)})" if result.first_call else ""
        extra += f", peak {result.memory}" if result.memory else ""
        text = f"{format_seconds(result.median)}{extra}"
    elif result.status == "wrong":
        text = f"WRONG: {result.note}"
    else:
        text = f"n/a ({result.note})"
    print(f"  {result.variant.label:<40} {text}", file=sys.stderr, flush=True)
    if result.status == "wrong":
        print(
            f"ERROR: {result.workload.key} {result.variant.label} gives a wrong result: {result.note}",
            file=sys.stderr,
            flush=True,
        )


def _load_average():
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="comma-separated workloads, e.g. W1,W3 (default: all)")
    parser.add_argument(
        "--frameworks",
        default=",".join(FRAMEWORKS),
        help="comma-separated frameworks to run (default: %(default)s)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: short timing budget")
    parser.add_argument("--markdown", metavar="FILE", help="also write the report to FILE")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory probes")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first wrong result")
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="rerun under glibc settings that keep freed memory in the process instead of "
        "returning it to the system (see benchmarks/README.md, 'Fresh memory')",
    )
    args = parser.parse_args(argv)
    keys = [k.strip().upper() for k in args.only.split(",")] if args.only else list(WORKLOADS)
    frameworks = [f.strip() for f in args.frameworks.split(",")]
    for unknown in [k for k in keys if k not in WORKLOADS] + [f for f in frameworks if f not in FRAMEWORKS]:
        parser.error(f"unknown workload or framework {unknown!r}")
    return args, keys, frameworks


# glibc's malloc, told to serve every size from its heap and never to trim it: memory a
# call frees is reused by the next call instead of being returned and faulted in again.
KEEP_FREED_MEMORY = {"MALLOC_MMAP_THRESHOLD_": str(2**30), "MALLOC_TRIM_THRESHOLD_": str(2**32)}


def _keeps_freed_memory():
    return all(os.environ.get(k) == v for k, v in KEEP_FREED_MEMORY.items())


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args, keys, frameworks = _parse(argv)
    if args.keep_freed_memory and not _keeps_freed_memory():
        # malloc reads its settings when the process starts: start again under them
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks.run", *argv],
                  {**os.environ, **KEEP_FREED_MEMORY})
    config = TimingConfig.quick() if args.quick else TimingConfig()
    load_before = _load_average()
    if load_before is not None and load_before > 0.5 * (os.cpu_count() or 1):
        print(
            f"WARNING: load average {load_before:.1f} on {os.cpu_count()} cores: "
            "other work on this machine will distort the timings",
            file=sys.stderr,
        )
    results = []
    for key in keys:
        workload = WORKLOADS[key]
        inputs = workload.inputs(np.random.default_rng(SEED))
        expected = workload.derivative(*inputs)
        try:
            verify_reference(workload, inputs, expected, np.random.default_rng(SEED + 1))
        except ReferenceError as error:
            print(f"ERROR: {error}; nothing can be checked against it, aborting", file=sys.stderr)
            return 2
        print(f"{workload.key} {workload.title}", file=sys.stderr, flush=True)
        for variant in variants_for(workload.kind, frameworks):
            result = run_variant(workload, variant, inputs, expected, config, not args.no_memory)
            results.append(result)
            _progress(result)
            if result.status == "wrong" and args.fail_fast:
                print("ERROR: stopping at the first wrong result (--fail-fast)", file=sys.stderr)
                return 1

    command = "python -m benchmarks.run " + " ".join(argv)
    extra = [("load average (1 min) at start / end", f"{load_before} / {_load_average()}")]
    if _keeps_freed_memory():
        extra.append(("glibc malloc", "keeps freed memory (" + ", ".join(
            f"{k}={v}" for k, v in KEEP_FREED_MEMORY.items()) + ")"))
    if "torch" in sys.modules:
        extra.append(("PyTorch threads", str(sys.modules["torch"].get_num_threads())))
    if "jax" in sys.modules:
        extra.append(("JAX devices", ", ".join(map(str, sys.modules["jax"].devices()))))
    text = report.document(results, machine.describe(), command.strip(), extra)
    print(text)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as out:
            out.write(text)
    wrong = [r for r in results if r.status == "wrong"]
    if wrong:
        print(f"ERROR: {len(wrong)} variant(s) gave wrong results", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
