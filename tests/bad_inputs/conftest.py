"""The bad-input corpus: every case is one command line that must be refused before any work.

`refuse(argv, expect)` runs `edgekd.cli.main` in this process (so a case costs milliseconds, not
an interpreter start) and asserts the README's promise: exit code 2, exactly one line on stderr
that names the problem, no traceback, and the working folder (inputs and output location)
byte-for-byte as it was. An exception other than EdgekdError escapes `main` and fails the case
with its traceback, which is what a user would have seen. `refuse_in_subprocess` does the same
through a real interpreter, for the cases about library warnings and progress lines.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests_recipe import write_tiny_recipe


def snapshot(root: Path) -> dict:
    """Every path under `root` with its kind and content digest (`{}` when root is absent), so
    a created, removed or rewritten file or folder, even an empty `.partial`, is seen."""
    root = Path(root)
    if not root.exists():
        return {}
    if root.is_file():
        return {".": hashlib.sha256(root.read_bytes()).hexdigest()}
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            found[os.path.relpath(os.path.join(dirpath, name), root)] = "dir"
        for name in filenames:
            path = Path(dirpath, name)
            found[os.path.relpath(path, root)] = (hashlib.sha256(path.read_bytes()).hexdigest()
                                                  if path.is_file() else "other")
    return found


def check_refusal(command: str, code: int, err: str, expect: str | tuple) -> str:
    """Assert exit 2 and one `edgekd <command>: error:` line naming `expect` (every part)."""
    assert code == 2, f"exit {code}, stderr:\n{err}"
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{err}"
    line = lines[0]
    assert line.startswith(f"edgekd {command}: error: "), line
    for part in (expect,) if isinstance(expect, str) else expect:
        assert part.lower() in line.lower(), f"{part!r} not in {line!r}"
    return line


@pytest.fixture()
def work(tmp_path, monkeypatch) -> Path:
    """The case's working folder (also the current directory, so a default `runs/<name>` lands
    here and is watched too)."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    # quiet_libraries sets it for this process; undone after the case, for the other tests
    monkeypatch.delenv("TRANSFORMERS_VERBOSITY", raising=False)
    return folder


@pytest.fixture()
def refuse(work, capfd):
    """`refuse(argv, expect, watch=work)`: run the CLI in-process and check the refusal."""
    from edgekd.cli import main

    def run(argv: list[str], expect, watch: Path | None = None) -> str:
        watched = Path(watch or work)
        before = snapshot(watched)
        capfd.readouterr()
        code = main([str(a) for a in argv])
        _, err = capfd.readouterr()
        line = check_refusal(argv[0], code, err, expect)
        assert snapshot(watched) == before, f"{watched} changed although the command was refused"
        return line

    return run


@pytest.fixture()
def refuse_in_subprocess(work):
    """`refuse_in_subprocess(argv, expect, watch=work)`: the same through `python -m edgekd`."""

    def run(argv: list[str], expect, watch: Path | None = None) -> str:
        watched = Path(watch or work)
        before = snapshot(watched)
        proc = subprocess.run([sys.executable, "-m", "edgekd", *map(str, argv)], cwd=work,
                              capture_output=True, text=True, timeout=300)
        line = check_refusal(argv[0], proc.returncode, proc.stderr, expect)
        assert snapshot(watched) == before, f"{watched} changed although the command was refused"
        return line

    return run


@pytest.fixture()
def read_only_dir(work) -> Path:
    """A folder nothing can be created in, even by root (which ignores mode bits): immutable
    (chattr +i) when running as root, mode 0555 otherwise."""
    folder = work / "read-only"
    folder.mkdir()
    (folder / "keep.txt").write_text("untouched\n")
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(folder)], check=True)
        yield folder
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)


@pytest.fixture()
def recipe(work, tiny_data_dir, tiny_model_dir) -> Path:
    """The tiny recipe (tiny BERT teacher, keyword data), written in the working folder."""
    return write_tiny_recipe(work, tiny_data_dir, tiny_model_dir)


def copy_model(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest)
    return dest


@pytest.fixture()
def teacher_copy(work, tiny_model_dir) -> Path:
    """A private copy of the tiny teacher, for cases that damage its files."""
    return copy_model(tiny_model_dir, work / "teacher-copy")


def _make_entry(name: str, target: str = "local", p50: float = 2.0, n: int = 30) -> dict:
    """A bench entry built the way `edgekd bench` builds one (runner result -> BenchEntry)."""
    from edgekd.benchmarks import stats
    from edgekd.benchmarks.contracts import BenchEntry, RunnerResult

    samples = (p50 * np.random.default_rng(0).lognormal(0.0, 0.05, n)).tolist()
    role, fmt, precision = name.split("-", 2)
    result = RunnerResult(
        format=fmt, runtime=fmt, runtime_version="1.0", runtime_settings={"threads": 1},
        threads=1, batch_size=1, seq_len=32, size_bytes=1000, load_time_ms=5.0,
        first_inference_ms=p50 * 3, warmup={"iterations": 2},
        measure={"min_iterations": n, "min_time_s": 0, "time_s": sum(samples) / 1000},
        latency_ms=stats.summarize(samples), samples_ms=samples, throughput_per_s=1000 / p50,
        peak_memory_mb=40.0, peak_memory_window_mb=38.0, energy_j=None, energy_method="none",
        energy_detail=None, cpu={"model": "Test CPU", "cores": 2, "flags": []}, host="box",
        python="3.11", cpu_affinity=None)
    return BenchEntry.measured(name=name, role=role, fmt=fmt, precision=precision, target=target,
                               result=result, size_bytes=1000).to_dict()


def _make_run(folder: Path, targets=("local",)) -> Path:
    """A run folder as the pipeline leaves it before the report stage, with old reports."""
    folder.mkdir(parents=True)
    (folder / "recipe.yaml").write_text(yaml.safe_dump({"name": "tiny", "bench": {"targets":
                                                                                 list(targets)}}))
    for target in targets:
        bench = folder / "bench" / target
        bench.mkdir(parents=True)
        for name in ("teacher-pytorch-fp32", "student-onnx-fp32"):
            (bench / f"{name}-t1.json").write_text(json.dumps(_make_entry(name, target)))
    for name in ("report.json", "report.md", "report.html"):
        (folder / name).write_text(f"the earlier {name}\n")
    return folder


def _write_report(path: Path, entries: list[dict]) -> Path:
    path.write_text(json.dumps({"schema": "edgekd.report/1", "run": "t", "created": "now",
                                "environment": {}, "entries": entries}))
    return path


@pytest.fixture()
def make_entry():
    """`make_entry(name, target="local", p50=2.0, n=30)`: a valid bench entry."""
    return _make_entry


@pytest.fixture()
def make_run():
    """`make_run(folder, targets=("local",))`: a run folder with bench results and old reports."""
    return _make_run


@pytest.fixture()
def write_report():
    """`write_report(path, entries)`: an edgekd.report/1 file."""
    return _write_report
