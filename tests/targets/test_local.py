"""The local target and target profiles: search path, validation, pinning, `edgekd targets`."""

from __future__ import annotations

import os

import pytest

from edgekd.benchmarks.bench import bench_artifact
from edgekd.cli import main
from edgekd.errors import EdgekdError
from edgekd.targets.profiles import find_profile, get_target, load_profile, target_slug

FAST = dict(batch_size=1, seq_len=None, warmup=1, min_iterations=3, min_time_s=0.0, energy="none")


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_profiles_are_found_by_name_in_the_search_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "edgekd-targets" / "bench-box.yaml",
          "target: local\nthreads: [1, 2]\npower: {watts_per_core: 3}\nnotes: quiet box\n")
    profile = find_profile("bench-box")
    assert profile.name == "bench-box" and profile.threads == [1, 2]
    target = get_target("bench-box")
    assert target.name == "bench-box" and target.kind == "local"
    assert target.power_options() == {"watts_per_core": 3.0}
    assert target_slug("bench-box") == "bench-box" and target_slug("local") == "local"
    assert main(["targets", "list"]) == 0
    out = capsys.readouterr().out
    assert "bench-box" in out and "quiet box" in out


@pytest.mark.parametrize("text, message", [
    ("target: local\nthreds: [1]\n", "unknown key 'threds'"),
    ("target: local\nthreads: [0]\n", "positive"),
    ("target: ftp-box\n", "'target' must be local or ssh://"),
    ("target: local\npower: {watts_per_core: many}\n", "power.watts_per_core"),
    ("[unclosed\n", "not valid YAML"),
    ("threads: [1]\n", "'target' is required"),
])
def test_malformed_profiles_are_one_line_errors(tmp_path, text, message):
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(EdgekdError, match=message) as info:
        load_profile(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_unknown_targets_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EdgekdError, match="unknown target 'nosuch'"):
        get_target("nosuch")
    with pytest.raises(EdgekdError, match="unknown kind of target 'ftp://'"):
        get_target("ftp://host")
    with pytest.raises(EdgekdError, match="port 'notaport' is not a number from 1 to 65535"):
        get_target("ssh://user@host:notaport")
    with pytest.raises(EdgekdError, match="expected ssh://user@host:port"):
        get_target("ssh://user@host/some/path")


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this OS")
def test_cpu_pinning_and_threads_reach_the_runner(onnx_dir, tmp_path):
    profile = write(tmp_path / "pinned.yaml", "target: local\ncpus: [0]\n")
    entry = bench_artifact(onnx_dir, str(profile), threads=2, **FAST)
    assert entry["cpu_affinity"] == [0] and entry["threads"] == 2 and entry["target"] == "pinned"


def test_targets_check_local(capsys):
    assert main(["targets", "check", "local"]) == 0
    out = capsys.readouterr().out
    assert "target local: reachable" in out and "onnxruntime    1." in out


def test_a_missing_python_is_a_clear_error(onnx_dir, tmp_path):
    profile = write(tmp_path / "nopy.yaml", "target: local\npython: /nonexistent/python\n")
    with pytest.raises(EdgekdError, match="cannot start /nonexistent/python"):
        bench_artifact(onnx_dir, str(profile), threads=1, **FAST)
