"""The `local` target: the runner in a subprocess on this host, in a fresh temp folder.

The runner and its modules are copied next to each other in a temp folder (as on a device), so a
local run and a remote run execute the same files. The artifact and inputs are used in place.
CPU affinity (profile `cpus`) is set on the child before it starts; threads go to the runtime.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from edgekd.errors import EdgekdError
from edgekd.targets.base import CHECK_SCRIPT, Target, parse_runner_output, runner_argv, runner_files


class LocalTarget(Target):
    kind = "local"

    def __init__(self, name: str = "local", profile=None):
        super().__init__(name, profile)
        self.python = os.path.expanduser(profile.python) if profile and profile.python else sys.executable
        self.cpus = list(profile.cpus) if profile and profile.cpus else None
        if self.cpus and not hasattr(os, "sched_setaffinity"):
            raise EdgekdError(f"target {name}: CPU pinning (cpus) is not supported on this OS")
        if self.cpus:
            allowed = os.sched_getaffinity(0)
            bad = sorted(set(self.cpus) - allowed)
            if bad:
                raise EdgekdError(f"target {name}: cpus {bad} are not available here "
                                  f"(allowed: {sorted(allowed)})")

    def _pin(self) -> None:  # runs in the child between fork and exec
        os.sched_setaffinity(0, self.cpus)

    def _run(self, argv: list[str], timeout_s: float, what: str, **kwargs) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,
                                  preexec_fn=self._pin if self.cpus else None, **kwargs)
        except subprocess.TimeoutExpired:
            raise EdgekdError(f"target {self.name}: {what} did not finish within {timeout_s:g} s "
                              "(hung? raise the time-out)") from None
        except OSError as exc:
            raise EdgekdError(f"target {self.name}: cannot start {self.python}: {exc.strerror}") from None

    def run_runner(self, artifact: Path, inputs: Path, options: dict, timeout_s: float) -> dict:
        """Run the runner on `artifact` with `inputs`; the runner's JSON document."""
        with tempfile.TemporaryDirectory(prefix="edgekd-runner-") as tmp:
            for path in runner_files():
                shutil.copy2(path, tmp)
            argv = [self.python, os.path.join(tmp, "runner.py"),
                    *runner_argv(str(Path(artifact).resolve()), str(Path(inputs).resolve()), options)]
            proc = self._run(argv, timeout_s, f"runner on {Path(artifact).name}", cwd=tmp)
        return parse_runner_output(self.name, proc, f"runner on {Path(artifact).name}")

    def python_info(self, timeout_s: float = 30) -> dict:
        """Python version and installed runtimes of this target's Python."""
        import json

        proc = self._run([self.python, "-c", CHECK_SCRIPT], timeout_s, "python check")
        if proc.returncode != 0:
            raise EdgekdError(f"target {self.name}: {self.python} failed: "
                              f"{(proc.stderr.strip().splitlines() or ['?'])[-1]}")
        return json.loads(proc.stdout)


def make_target(spec: str, profile=None) -> LocalTarget:
    """The local target (`spec` is "local"; a profile adds python, cpus, threads, power)."""
    return LocalTarget(profile.name if profile else "local", profile)
