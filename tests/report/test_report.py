"""report.json / report.md / report.html from a run folder, the summary, the hardware comparison.

The run folders are written here as the other stages write them (docs/contracts.md): bench
entries whose latency samples are drawn from log-normal distributions, export.json files (one
failed), metrics.json for the PyTorch originals.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgekd.report import build as reporting
from edgekd.report.hardware import compare_targets
from edgekd.report.rows import pareto_front
from edgekd.report.summary import recommended_student, summary_table
from edgekd.cli import main

# name: (p50 ms, accuracy or None when it must come from export.json / metrics.json, size)
ARTIFACTS = {
    "teacher-pytorch-fp32": (37.0, 0.92, 90_000_000),
    "student-pytorch-fp32": (12.0, 0.90, 30_000_000),
    "student-onnx-fp32": (8.0, 0.90, 29_000_000),
    "student-onnx-int8-dynamic": (4.0, 0.895, 7_500_000),
    "student-openvino-fp16": (5.0, 0.90, 15_000_000),
}
FAILED_ERROR = "litert-torch: unsupported op 'Erf' | layer 3"


def make_entry(name, p50, size, target="local", threads=1, seed=0, n=200, host="box-a",
               scale=1.0):
    """A bench entry built the way `edgekd bench` builds one: a runner result (the typed
    contract the runner prints) turned into an entry by `BenchEntry.measured`. Its samples are
    log-normal around p50 (times `scale`)."""
    from edgekd.benchmarks import stats
    from edgekd.benchmarks.contracts import BenchEntry, RunnerResult

    rng = np.random.default_rng(seed)
    samples = (p50 * scale * rng.lognormal(0.0, 0.08, n)).tolist()
    role, fmt, precision = name.split("-", 2)
    result = RunnerResult(
        format=fmt, runtime=fmt, runtime_version="1.0", runtime_settings={"threads": threads},
        threads=threads, batch_size=1, seq_len=32, size_bytes=size, load_time_ms=50.0,
        first_inference_ms=p50 * 3, warmup={"iterations": 10},
        measure={"min_iterations": n, "min_time_s": 0, "time_s": sum(samples) / 1000},
        latency_ms=stats.summarize(samples), samples_ms=samples,
        throughput_per_s=1000 / float(np.median(samples)), peak_memory_mb=40 + size / 1e6,
        peak_memory_window_mb=38 + size / 1e6, energy_j=p50 * 15 / 1000,
        energy_method="estimate:tdp*cpu-time", energy_detail=None,
        cpu={"model": "Test CPU", "cores": 2, "flags": []}, host=host, python="3.11",
        cpu_affinity=None)
    return BenchEntry.measured(name=name, role=role, fmt=fmt, precision=precision, target=target,
                               result=result, size_bytes=size).to_dict()


def make_run(folder: Path, targets=("local",), name="tiny", host="box-a", scale=1.0) -> Path:
    """A run folder as the pipeline leaves it before the report stage."""
    folder.mkdir(parents=True)
    (folder / "recipe.yaml").write_text(yaml.safe_dump(
        {"name": name, "bench": {"targets": list(targets), "threads": [1], "warmup": 10}}))
    for role in ("teacher", "student"):
        (folder / role).mkdir()
        acc = ARTIFACTS[f"{role}-pytorch-fp32"][1]
        (folder / role / "metrics.json").write_text(json.dumps(
            {"accuracy": acc, "macro_f1": acc - 0.01, "parameters": 1000}))
    exports = {k: v for k, v in ARTIFACTS.items() if "pytorch" not in k}
    for export_name, (_, acc, size) in exports.items():
        role, fmt, precision = export_name.split("-", 2)
        d = folder / "exports" / export_name
        d.mkdir(parents=True)
        (d / "export.json").write_text(json.dumps({
            "schema": "edgekd.export/1", "name": export_name, "role": role, "format": fmt,
            "precision": precision, "status": "ok", "error": None, "accuracy": acc, "size_bytes": size,
            "parity": {"max_abs_diff": 1e-3, "top1_agreement": 1.0, "n": 64, "min_agreement": 0.98}}))
    d = folder / "exports" / "student-tflite-int8-static"
    d.mkdir()
    (d / "export.json").write_text(json.dumps({
        "schema": "edgekd.export/1", "name": "student-tflite-int8-static", "role": "student",
        "format": "tflite", "precision": "int8-static", "status": "failed", "error": FAILED_ERROR,
        "accuracy": None, "size_bytes": 0, "parity": None, "seq_len": 32, "batch_size": 1}))
    for t, target in enumerate(targets):
        slug = folder / "bench" / target.replace("/", "_").replace(":", "_")
        slug.mkdir(parents=True)
        for i, (artifact, (p50, _, size)) in enumerate(ARTIFACTS.items()):
            entry = make_entry(artifact, p50 * (1 + t), size, target, seed=i + 10 * t, host=host,
                               scale=scale)
            (slug / f"{artifact}-t1.json").write_text(json.dumps(entry))
    return folder


@pytest.fixture()
def run_dir(tmp_path) -> Path:
    return make_run(tmp_path / "runs" / "tiny")


def test_build_report_collects_fills_and_lists_failures(run_dir):
    report = reporting.build_report(run_dir)
    assert report["schema"] == "edgekd.report/1" and report["run"] == "tiny"
    names = [e["name"] for e in report["entries"]]
    assert names[0] == "teacher-pytorch-fp32"          # teacher first
    assert set(names) == set(ARTIFACTS) | {"student-tflite-int8-static"}
    by_name = {e["name"]: e for e in report["entries"]}
    # Accuracy comes from metrics.json for PyTorch entries and from export.json for artifacts.
    for name, (_, acc, _) in ARTIFACTS.items():
        assert by_name[name]["accuracy"] == pytest.approx(acc)
    assert by_name["student-onnx-fp32"]["parity"]["top1_agreement"] == 1.0
    failed = by_name["student-tflite-int8-static"]
    assert failed["status"] == "failed" and failed["error"] == FAILED_ERROR
    assert failed["latency_ms"] is None and failed["samples_ms"] == []
    assert len(by_name["student-onnx-fp32"]["samples_ms"]) == 200   # raw samples kept
    env = report["environment"]
    assert env["cpu"]["cores_logical"] >= 1 and "onnxruntime" in env["libraries"]
    assert env["bench"] == {"targets": ["local"], "threads": [1], "warmup": 10}


def test_write_report_files_numbers_and_markers(run_dir):
    report = reporting.build_report(run_dir)
    reporting.write_report(run_dir, report)
    assert json.loads((run_dir / "report.json").read_text())["entries"] == report["entries"]
    md = (run_dir / "report.md").read_text()
    by_name = {e["name"]: e for e in report["entries"]}
    teacher, int8 = by_name["teacher-pytorch-fp32"], by_name["student-onnx-int8-dynamic"]
    speedup = teacher["latency_ms"]["p50"] / int8["latency_ms"]["p50"]
    retention = 100 * 0.895 / 0.92
    int8_line = next(line for line in md.splitlines() if line.startswith("| student-onnx-int8-dynamic"))
    assert f"{speedup:.2f}×" in int8_line and f"{retention:.1f}%" in int8_line
    assert f"{90e6 / 7.5e6:.2f}×" in int8_line                       # size ratio 12.00×
    assert "≈" in int8_line and "(estimate)" in int8_line
    # The failed export is listed with its error; the pipe in the message does not break the table.
    failed_line = next(line for line in md.splitlines() if "student-tflite-int8-static" in line)
    assert "unsupported op 'Erf' \\| layer 3" in failed_line
    html = (run_dir / "report.html").read_text()
    assert "<svg" in html and 'class="pareto"' in html and 'class="point teacher' in html
    assert 'class="bar estimate"' in html and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")          # nothing fetched at view time
    assert not list(run_dir.glob(".*.tmp"))


def test_recommended_student_rule_and_summary_table(run_dir):
    from rich.console import Console

    report = reporting.build_report(run_dir)
    # The teacher has 0.92; no student is within the default budget of 1 point: the most
    # accurate (0.90) and, among those, the fastest (openvino fp16, 5 ms) is named.
    assert report["accuracy_budget"] == 0.01
    assert recommended_student(report)["name"] == "student-openvino-fp16"
    assert "no student artifact is within" in report["recommended"][0]["why"]
    report["accuracy_budget"] = 0.03   # every student within 3 points: the fastest (int8, 4 ms)
    assert recommended_student(report)["name"] == "student-onnx-int8-dynamic"
    for e in report["entries"]:
        if e["name"] == "student-onnx-int8-dynamic":
            e["accuracy"] = 0.85   # now 7 points below the teacher: openvino fp16 (5 ms) again
    assert recommended_student(report)["name"] == "student-openvino-fp16"
    console = Console(record=True, width=160)
    console.print(summary_table(report))
    text = console.export_text()
    assert "teacher-pytorch-fp32" in text and "student-openvino-fp16" in text
    p50 = {e["name"]: e["latency_ms"]["p50"] for e in report["entries"] if e["latency_ms"]}
    assert f"{p50['teacher-pytorch-fp32'] / p50['student-openvino-fp16']:.2f}× speed-up" in text
    assert f"{90 / 15:.2f}× smaller" in text


def test_pareto_front():
    # (latency, accuracy): b dominates c; a and d are the extremes; e is dominated by a.
    points = [(1.0, 0.80), (2.0, 0.90), (3.0, 0.85), (10.0, 0.95), (1.5, 0.79)]
    assert pareto_front(points) == [0, 1, 3]


def test_report_command_and_bad_input(run_dir, tmp_path, capsys):
    assert main(["report", str(run_dir)]) == 0
    assert {"report.json", "report.md", "report.html"} <= {p.name for p in run_dir.iterdir()}
    assert "Teacher vs recommended student" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    assert "nothing to report" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_hardware_comparison_across_runs(tmp_path, capsys):
    a = make_run(tmp_path / "runs" / "pc", targets=("local",), name="pc", host="pc")
    b = make_run(tmp_path / "runs" / "pi", targets=("rpi4",), name="pi", host="pi", scale=3.0)
    out = tmp_path / "cmp"
    assert main(["report", str(a), str(b), "--out", str(out)]) == 0
    hardware = json.loads((out / "comparison.json").read_text())
    assert hardware["targets"] == ["local", "rpi4"]
    row = next(r for r in hardware["rows"] if r["name"] == "student-onnx-fp32")
    assert row["p50_ms"]["rpi4"] / row["p50_ms"]["local"] == pytest.approx(3.0, rel=0.1)
    md = (out / "comparison.md").read_text()
    assert "rpi4 vs local" in md and "3.0" in md
    assert 'class="plot hardware"' in (out / "comparison.html").read_text()
    # Two machines that both call themselves "local" stay two columns.
    c = make_run(tmp_path / "runs" / "other", targets=("local",), name="other", host="other")
    hw = compare_targets([reporting.build_report(a), reporting.build_report(c)])
    assert hw["targets"] == ["local (pc)", "local (other)"]
    # One run measured on one target has nothing to compare.
    assert main(["report", str(a), "--out", str(tmp_path / "x")]) == 2


def test_single_run_with_two_targets_gets_hardware_section(tmp_path):
    run = make_run(tmp_path / "run", targets=("local", "ssh://pi@127.0.0.1:22"))
    reporting.write_report(run, reporting.build_report(run))
    md = (run / "report.md").read_text()
    assert "## Hardware comparison" in md and "ssh://pi@127.0.0.1:22 vs local" in md
    assert md.count("## local, 1 thread") == 1


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed "
                    "(run `make system-deps`)")
def test_html_report_loads_cleanly_in_headless_chromium(tmp_path, capsys):
    import re
    import subprocess

    run = make_run(tmp_path / "run", targets=("local", "rpi4"))
    reporting.write_report(run, reporting.build_report(run))
    url = (run / "report.html").resolve().as_uri()
    dom = subprocess.run([str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile1'}",
                          "--enable-logging=stderr", "--v=0", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout).group(0)
    # The page's own script ran after load and counted no uncaught error.
    assert 'data-ready="1"' in body and 'data-errors="0"' in body, body
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
    # 2 settings x (scatter, latency, size, memory, energy) + the hardware comparison plot.
    assert 'data-plots="11"' in body
    assert dom.stdout.count('<table class="main">') == 2 and 'class="hardware"' in dom.stdout
    assert dom.stdout.count('class="pareto"') == 2 and "★ teacher" in dom.stdout
    shot = tmp_path / "report.png"
    subprocess.run([str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile2'}",
                    f"--screenshot={shot}", "--window-size=1280,2000", url],
                   capture_output=True, text=True, timeout=120, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    with capsys.disabled():
        print(f"\nreport screenshot: {shot}")


def test_each_target_is_described_by_its_own_machine(tmp_path):
    """The runner's environment of each target (not the host's) is shown per target."""
    run = make_run(tmp_path / "run", targets=("local", "ssh://pi@127.0.0.1:22"))
    machines = {"local": "Host CPU 1", "ssh___pi@127.0.0.1_22": "Cortex-A72"}
    for path in sorted((run / "bench").glob("*/*.json")):
        entry = json.loads(path.read_text())
        # each entry's runner names only its own runtime; the target ran them all
        runtime = {"openvino": "2025.1"} if "openvino" in path.name else {"onnxruntime": "1.16.0"}
        entry["environment"] = {"cpu": {"model": machines[path.parent.name], "cores_logical": 4,
                                        "flags": ["neon"]}, "memory_total_mb": 3800.0,
                                "os": "Linux-arm64", "python": "3.9.2", "host": "pi",
                                "runtimes": {**runtime, "numpy": "1.26.4"}}
        path.write_text(json.dumps(entry))
    report = reporting.build_report(run)
    targets = report["environment"]["targets"]
    assert {t: e["cpu"]["model"] for t, e in targets.items()} == \
        {"local": "Host CPU 1", "ssh://pi@127.0.0.1:22": "Cortex-A72"}
    assert all(e["runtimes"].keys() == {"onnxruntime", "openvino", "numpy"} for e in targets.values())
    reporting.write_report(run, report)
    md, html = (run / "report.md").read_text(), (run / "report.html").read_text()
    for text in (md, html):
        assert "Cortex-A72" in text and "Host CPU 1" in text and "onnxruntime 1.16.0" in text
    assert "## Targets (as each target's runner described its machine)" in md


def test_a_student_that_loses_is_said_to_lose_not_a_ratio_below_one():
    from edgekd.report.summary import _versus

    assert _versus(100.0, 20.0, "smaller") == "5.00× smaller"
    assert _versus(233.8, 297.5, "smaller") == "1.27× larger"     # not "0.79× smaller"
    assert _versus(10.0, 12.5, "speed-up") == "1.25× slow-down"
    assert _versus(None, 3.0, "less") == "—"
