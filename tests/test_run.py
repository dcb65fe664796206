"""`edgekd run` end to end on the tiny model: every stage, the run folder contract, resume."""

import json
import subprocess
import sys

import pytest

from tests_recipe import write_tiny_recipe


@pytest.fixture(scope="module")
def run_once(tmp_path_factory, tiny_data_dir, tiny_model_dir):
    folder = tmp_path_factory.mktemp("run")
    recipe = write_tiny_recipe(folder, tiny_data_dir, tiny_model_dir)
    out = folder / "runs" / "tiny"
    proc = subprocess.run([sys.executable, "-m", "edgekd", "run", str(recipe), "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    return recipe, out, proc


def test_run_writes_the_whole_run_folder(run_once):
    _, out, proc = run_once
    assert proc.returncode == 0, proc.stderr[-3000:]
    for path in ("recipe.yaml", "teacher/metrics.json", "student/metrics.json",
                 "exports/student-onnx-fp32/export.json", "exports/student-onnx-int8-dynamic/export.json",
                 "exports/teacher-onnx-fp32/export.json", "report.json", "report.md", "report.html"):
        assert (out / path).is_file(), path
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "edgekd.report/1"
    names = {e["name"] for e in report["entries"]}
    assert {"teacher-pytorch-fp32", "student-pytorch-fp32", "student-onnx-fp32",
            "teacher-onnx-fp32"} <= names
    for entry in report["entries"]:
        for key in ("name", "role", "format", "precision", "target", "accuracy", "size_bytes",
                    "latency_ms", "peak_memory_mb", "energy_j", "energy_method"):
            assert key in entry, (entry["name"], key)
        if entry["status"] == "ok":
            assert entry["latency_ms"]["n"] >= 5 and entry["latency_ms"]["p50"] > 0
            assert len(entry["samples_ms"]) == entry["latency_ms"]["n"]
            assert entry["energy_method"].startswith(("estimate", "rapl", "hwmon", "nvml", "command"))
    assert set(report["timings_s"]) >= {"distill", "export", "bench"}  # the stages before the report
    assert "Teacher vs recommended student" in proc.stdout


def test_rerun_resumes_and_skips_everything(run_once):
    recipe, out, _ = run_once
    bench_file = next((out / "bench" / "local").glob("student-onnx-fp32-t1-*.json"))
    before = bench_file.stat().st_mtime_ns
    proc = subprocess.run([sys.executable, "-m", "edgekd", "run", str(recipe), "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "teacher: already complete, skipped" in proc.stdout
    assert "student: already complete, skipped" in proc.stdout
    assert bench_file.stat().st_mtime_ns == before


def test_changed_distill_settings_refuse_the_old_folder(run_once):
    recipe, out, _ = run_once
    proc = subprocess.run([sys.executable, "-m", "edgekd", "run", str(recipe), "--out", str(out),
                           "--set", "distill.temperature=2"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "different 'distill' section" in proc.stderr
