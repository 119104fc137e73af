"""What the numbers were measured on: CPU, cores, memory, and the versions of everything.

Versions come from package metadata, so describing the machine imports no framework.
"""

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np

PACKAGES = ["numpy", "scipy", "chainrule", "autograd", "jax", "jaxlib", "torch"]


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib():
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def _numpy_blas():
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas['name']} {blas.get('version', '')}".strip()
    except Exception:  # the layout of show_config is not a stable API
        return "unknown"


def _version(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git(*args):
    try:
        completed = subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent.parent,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return completed.stdout.strip() if completed.returncode == 0 else ""


def _chainrule_source():
    """The checkout's commit, and whether chainrule/ differs from it."""
    commit = _git("rev-parse", "--short", "HEAD")
    if not commit:
        return "source checkout"
    dirty = _git("status", "--porcelain", "--", "chainrule")
    return f"source checkout at {commit}" + (" with uncommitted changes" if dirty else "")


def describe():
    """A list of (what, value) pairs."""
    versions = []
    for package in PACKAGES:
        version = _version(package)
        if package == "chainrule":  # run from the checkout: say which state of it
            version = f"{version} ({_chainrule_source()})" if version else _chainrule_source()
        versions.append(f"{package} {version or 'not installed'}")
    return [
        ("CPU", _cpu_model()),
        ("cores", f"{os.cpu_count()} logical, {_usable_cores()} usable by this process"),
        ("memory", _memory_gib()),
        ("system", f"{platform.system()} {platform.release()} ({platform.machine()})"),
        ("Python", platform.python_version()),
        ("NumPy BLAS", _numpy_blas()),
        ("packages", ", ".join(versions)),
    ]
