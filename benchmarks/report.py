"""The Markdown report: machine, one table of all variants, and what went wrong."""

import datetime
from dataclasses import dataclass
from typing import Optional

from .variants import FRAMEWORKS, Variant
from .workloads import Workload

NOTE_WIDTH = 90


@dataclass
class Result:
    workload: Workload
    variant: Variant
    status: str  # "ok" | "n/a" | "wrong"
    note: str = ""  # why n/a or wrong
    median: Optional[float] = None  # seconds per call, steady state
    first_call: Optional[float] = None  # seconds, first call minus median (compiled variants)
    memory: Optional[str] = None  # peak extra memory, formatted, or "n/a (...)"

    @property
    def peer(self):
        return FRAMEWORKS[self.variant.framework].peer


def format_seconds(seconds):
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def format_ratio(ratio):
    if ratio >= 100:
        return f"{ratio:.0f}"
    return f"{ratio:.1f}" if ratio >= 10 else f"{ratio:.2f}"


def _cell(text):
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= NOTE_WIDTH else text[: NOTE_WIDTH - 1] + "…"


def floor_and_best_peer(results):
    """{workload key: (NumPy-by-hand Result or None, best peer Result or None)}."""
    summary = {}
    for result in results:
        if result.status != "ok":
            continue
        floor, best = summary.get(result.workload.key, (None, None))
        if result.variant.framework == "numpy":
            floor = result
        elif result.peer and (best is None or result.median < best.median):
            best = result
        summary[result.workload.key] = (floor, best)
    return summary


def table(results):
    with_memory = any(r.memory is not None for r in results)
    header = ["workload", "variant", "median", "× NumPy by hand", "× best peer", "first call"]
    if with_memory:
        header.append("peak memory")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    summary = floor_and_best_peer(results)
    previous = None
    for result in results:
        workload = result.workload
        name = f"{workload.key} {workload.title}" if workload.key != previous else ""
        previous = workload.key
        floor, best = summary.get(workload.key, (None, None))
        cells = [name, f"`{result.variant.label}`"]
        if result.status == "ok":
            cells += [
                format_seconds(result.median),
                format_ratio(result.median / floor.median) if floor else "",
                format_ratio(result.median / best.median) if best else "",
                f"+{format_seconds(result.first_call)}" if result.first_call is not None else "",
            ]
        elif result.status == "wrong":
            cells += [f"**WRONG**: {_cell(result.note)}", "", "", ""]
        else:
            cells += [f"n/a ({_cell(result.note)})", "", "", ""]
        if with_memory:
            cells.append(_cell(result.memory) if result.memory is not None else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def best_peers(results):
    lines = []
    for key, (floor, best) in floor_and_best_peer(results).items():
        if best is not None:
            lines.append(f"- {key}: `{best.variant.label}`, {format_seconds(best.median)}")
    return "\n".join(lines) or "- none measured"


def problems(results):
    lines = []
    for result in results:
        if result.status == "wrong":
            lines.append(f"- **WRONG** {result.workload.key} `{result.variant.label}`: {result.note}")
    for result in results:
        if result.status == "n/a" and result.variant.framework == "chainrule":
            lines.append(f"- n/a {result.workload.key} `{result.variant.label}`: {result.note}")
    return "\n".join(lines)


def document(results, machine, command, extra_machine=()):
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    parts = [
        "# chainrule core benchmarks",
        "",
        f"Measured {today} with `{command}`, all workloads in float64, in one process "
        "(peak memory: one fresh process per variant). Method: `benchmarks/README.md`.",
        "",
        "## Machine",
        "",
        *[f"- {what}: {value}" for what, value in [*machine, *extra_machine]],
        "",
        "## Results",
        "",
        "Median time per call in steady state. Ratios are to the hand-written NumPy "
        "derivative of the same workload (the floor) and to the fastest of autograd, JAX "
        "and PyTorch on it (the best peer); below 1 is faster. *first call*: extra time of "
        "the first call of a compiled variant (tracing and compiling), over the median. "
        "*peak memory*: resident memory a steady-state call needs on top of its inputs.",
        "",
        table(results),
        "",
        "Best peer per workload:",
        "",
        best_peers(results),
    ]
    trouble = problems(results)
    if trouble:
        parts += ["", "## Problems", "", trouble]
    return "\n".join(parts) + "\n"
