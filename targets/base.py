"""What every target shares: the runner's files, its command line, and reading its answer.

A target moves an artifact, its inputs and the runner to where it runs, starts the runner with a
Python there, and returns the runner's JSON document. Subclasses implement `run_runner` (start
the runner) and `python_info` (what `edgekd targets check` shows).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from edgekd.errors import EdgekdError

# The runner and the standalone modules it imports (stdlib + numpy + one runtime): copied
# together. Every runtime adapter (`runtime_<format>.py`) travels, so a new format needs no edit.
RUNNER_FILES = ("runner.py", "runtimes.py", "contracts.py", "stats.py", "memory.py", "energy.py",
                "generation.py")
EXIT_RUNTIME_MISSING = 3

# Run by the target's Python for `targets check`: versions without importing the runtimes.
CHECK_SCRIPT = r"""
import importlib.util, json, platform, os
from importlib.metadata import version, PackageNotFoundError
mods = {"numpy": "numpy", "onnxruntime": "onnxruntime", "openvino": "openvino",
        "ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime",
        "tensorflow": "tensorflow", "torch": "torch", "transformers": "transformers",
        "psutil": "psutil", "pynvml": "nvidia-ml-py"}
found = {}
for mod, dist in mods.items():
    if importlib.util.find_spec(mod) is None:
        found[mod] = None
        continue
    try:
        found[mod] = version(dist)
    except PackageNotFoundError:
        found[mod] = "installed"
print(json.dumps({"python": platform.python_version(), "executable": __import__("sys").executable,
                  "machine": platform.machine(), "system": platform.system(),
                  "cores": os.cpu_count(), "packages": found}))
"""


def runner_files() -> list[Path]:
    """Paths of the runner and its sibling modules inside the installed edgekd.benchmarks."""
    import edgekd.benchmarks as pkg

    folder = Path(pkg.__file__).parent
    return [folder / name for name in RUNNER_FILES] + sorted(folder.glob("runtime_*.py"))


def runner_argv(model: str, inputs: str, options: dict) -> list[str]:
    """The runner's arguments (after `python runner.py`) from an options dict."""
    argv = ["--model", model, "--inputs", inputs]
    for key, value in options.items():
        if value is None:
            continue
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv


class Target:
    """Base class: `name` is what entries record as their `target`."""

    kind = "base"

    def __init__(self, name: str, profile=None):
        self.name = name
        self.profile = profile

    @property
    def threads(self) -> list[int]:
        """The thread counts this device is measured at when the recipe names none (profile
        `threads:`; a plain target: 1)."""
        return list(self.profile.threads) if self.profile else [1]

    def power_options(self) -> dict:
        """What the runner's energy meters need from the profile (as --power-profile JSON)."""
        if not self.profile:
            return {}
        out = {"watts_per_core": self.profile.power.watts_per_core,
               "energy_command": self.profile.energy_command}
        return {k: v for k, v in out.items() if v is not None}

    def run_runner(self, artifact: Path, inputs: Path, options: dict, timeout_s: float) -> dict:
        raise NotImplementedError

    def python_info(self, timeout_s: float = 30) -> dict:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def parse_runner_output(target: str, proc: subprocess.CompletedProcess, what: str) -> dict:
    """The runner's JSON document, or an EdgekdError that quotes its last stderr line."""
    stderr_lines = [line for line in (proc.stderr or "").splitlines() if line.strip()]
    runner_lines = [line for line in stderr_lines if line.startswith("runner:")]
    last = (runner_lines or stderr_lines or ["(no message)"])[-1].strip()
    if proc.returncode == EXIT_RUNTIME_MISSING:
        raise EdgekdError(f"target {target}: {what}: {last.removeprefix('runner: ')}")
    if proc.returncode != 0:
        raise EdgekdError(f"target {target}: {what} failed (exit {proc.returncode}): {last}")
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise EdgekdError(f"target {target}: {what} printed no valid JSON "
                          f"(stdout starts {proc.stdout[:80]!r})") from None
