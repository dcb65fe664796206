"""What machine and software produced a set of numbers, so two reports can be compared honestly.

`collect()` is cheap and imports nothing heavy: library versions come from the installed
distributions' metadata (`importlib.metadata`), never from importing torch or a runtime.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

# Thread settings and the CPU features that pick kernels: one list, shared with the runner, which
# describes the target's machine the same way (runner.environment).
from edgekd.benchmarks.runner import INTERESTING_FLAGS, THREAD_VARS

# Distributions whose versions change the numbers (runtimes, converters, quantizers).
LIBRARIES = ("numpy", "torch", "transformers", "optimum", "optimum-onnx", "optimum-intel", "onnx",
             "onnxruntime", "openvino", "nncf", "litert-torch", "ai-edge-litert",
             "ai-edge-quantizer", "tflite-runtime")


def collect() -> dict[str, Any]:
    """Describe this machine and its software: CPU, memory, OS, Python, library versions,
    thread environment variables and the edgekd version and git commit."""
    from edgekd import __version__

    return {
        "host": socket.gethostname(),
        "cpu": cpu_info(),
        "memory_total_mb": _memory_total_mb(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "libraries": library_versions(),
        "threads_env": {name: os.environ[name] for name in THREAD_VARS if name in os.environ},
        "edgekd": {"version": __version__, "commit": git_commit(Path(__file__).resolve().parent)},
    }


def cpu_info() -> dict[str, Any]:
    """CPU model, physical and logical core counts and the vector-instruction flags present."""
    model, flags = _proc_cpuinfo()
    return {
        "model": model or platform.processor() or platform.machine() or None,
        "cores_logical": os.cpu_count(),
        "cores_physical": _physical_cores(),
        "flags": [flag for flag in INTERESTING_FLAGS if flag in flags],
    }


def installed_versions(*names: str) -> dict[str, str]:
    """Versions of the given distributions that are installed (missing ones left out)."""
    return {name: v for name, v in library_versions(names).items() if v is not None}


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str | None]:
    """Installed version of each distribution (None when it is not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(folder: Path) -> str | None:
    """The commit checked out in the git work tree holding `folder`; None when it is not a
    checkout (an installed wheel) or git is absent. A "-dirty" suffix marks local changes."""
    try:
        # The folder must be *tracked* by the repository: a wheel installed into a venv that
        # happens to sit inside some checkout must not report that checkout's commit.
        tracked = subprocess.run(["git", "-C", str(folder), "ls-files", "--error-unmatch", "."],
                                 capture_output=True, text=True, timeout=5)
        head = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=5)
        if tracked.returncode != 0 or head.returncode != 0:
            return None
        commit = head.stdout.strip()
        # Only files of the package's own folder count: a dirty run folder is not a dirty build.
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain",
                                "--untracked-files=no", "--", "."],
                               capture_output=True, text=True, timeout=5)
        return commit + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _proc_cpuinfo() -> tuple[str | None, set[str]]:
    """Model name and flags from /proc/cpuinfo (Linux; x86 'flags', Arm 'Features')."""
    model, flags = None, set()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and model is None:
            model = value.strip() or None
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model, flags


def _physical_cores() -> int | None:
    try:
        import psutil

        return psutil.cpu_count(logical=False)
    except Exception:  # psutil missing or unsupported platform: the count is optional
        return None


def _memory_total_mb() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**20, 1)
    except Exception:
        return None
