"""environment.collect(): what the report records about the machine, cheaply."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from edgekd.benchmarks import environment


def test_collect_records_machine_and_versions(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    env = environment.collect()
    cpu = env["cpu"]
    assert cpu["cores_logical"] == os.cpu_count()
    assert cpu["cores_physical"] is None or 1 <= cpu["cores_physical"] <= cpu["cores_logical"]
    assert set(cpu["flags"]) <= set(environment.INTERESTING_FLAGS)
    if Path("/proc/cpuinfo").is_file():
        text = Path("/proc/cpuinfo").read_text()
        if " avx2" in text:
            assert "avx2" in cpu["flags"]
        assert cpu["model"]
    assert env["memory_total_mb"] > 100
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["libraries"]["numpy"] == importlib.metadata.version("numpy")
    assert env["libraries"]["tflite-runtime"] is None or isinstance(env["libraries"]["tflite-runtime"], str)
    assert env["threads_env"]["OMP_NUM_THREADS"] == "3"
    json.dumps(env)   # plain data, ready for report.json


def test_git_commit_of_checkout_and_of_a_plain_folder(tmp_path):
    package = Path(environment.__file__).resolve().parent
    inside = subprocess.run(["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True,
                            text=True)
    commit = environment.collect()["edgekd"]["commit"]
    if inside.returncode == 0:
        assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", commit)
        assert commit.startswith(inside.stdout.strip())
    else:
        assert commit is None
    assert environment.git_commit(tmp_path) is None        # not a checkout -> null
    # A folder inside a checkout that git does not track (a venv's site-packages) -> null too.
    repo = tmp_path / "repo"
    (repo / "tracked").mkdir(parents=True)
    (repo / "untracked").mkdir()
    (repo / "tracked" / "a.py").write_text("x = 1\n")
    (repo / "untracked" / "b.py").write_text("y = 2\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "tracked"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert environment.git_commit(repo / "tracked") == head
    assert environment.git_commit(repo / "untracked") is None
    (repo / "tracked" / "a.py").write_text("x = 3\n")
    assert environment.git_commit(repo / "tracked") == head + "-dirty"


def test_collect_imports_nothing_heavy():
    code = ("import sys, json; from edgekd.benchmarks import environment; environment.collect(); "
            "print(json.dumps(sorted(m for m in ('torch', 'transformers', 'onnxruntime', 'openvino', "
            "'nncf', 'tensorflow', 'ai_edge_litert') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
