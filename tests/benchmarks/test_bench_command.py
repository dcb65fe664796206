"""`edgekd bench` and `bench_artifact`: entries as docs/contracts.md says, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgekd.benchmarks.bench import bench_artifact, entry_file_name, failed_entry, resolve_artifact
from edgekd.cli import main
from edgekd.errors import EdgekdError

ENTRY_KEYS = {"name", "role", "format", "precision", "target", "threads", "batch_size", "seq_len",
              "status", "error", "accuracy", "parity", "size_bytes", "latency_ms", "samples_ms",
              "throughput_per_s", "load_time_ms", "first_inference_ms", "peak_memory_mb",
              "peak_memory_window_mb", "energy_j", "energy_method", "runtime", "runtime_version",
              "warmup", "cpu", "host", "runtime_settings"}
FAST = ["--warmup", "1", "--min-iterations", "5", "--min-time", "0"]


def test_bench_writes_a_report_document(onnx_dir, openvino_dir, tmp_path):
    out = tmp_path / "bench.json"
    code = main(["bench", str(onnx_dir), str(openvino_dir / "model.xml"), "--threads", "2",
                 "--energy", "estimate", *FAST, "--out", str(out)])
    assert code == 0
    doc = json.loads(out.read_text())
    assert doc["schema"] == "edgekd.report/1" and doc["run"] is None and doc["environment"]
    onnx, ov = doc["entries"]
    for entry in (onnx, ov):
        assert ENTRY_KEYS <= set(entry) and entry["status"] == "ok" and entry["target"] == "local"
        assert entry["threads"] == 2 and entry["accuracy"] == 0.75 and entry["role"] == "student"
        assert entry["parity"]["top1_agreement"] == 1.0
        assert entry["energy_method"].startswith("estimate:")
    assert (onnx["name"], onnx["format"], onnx["runtime"]) == ("student-onnx-fp32", "onnx", "onnxruntime")
    assert (ov["name"], ov["format"], ov["runtime"]) == ("student-openvino-fp32", "openvino", "openvino")
    # The file name carries every setting that changes the measurement.
    assert entry_file_name(onnx) == f"student-onnx-fp32-t2-b1-s{onnx['seq_len']}.json"
    assert onnx["runtime_settings"]["intra_op_num_threads"] == 2
    assert ov["runtime_settings"]["INFERENCE_PRECISION_HINT"] == "f32"


def test_bench_tflite_and_pytorch_baseline(tflite_dir, tiny_model_dir, tmp_path):
    model = tmp_path / "student"
    shutil.copytree(tiny_model_dir, model)
    shutil.copy(tflite_dir / "inputs.npz", model)
    (model / "metrics.json").write_text('{"accuracy": 0.5}')
    kw = dict(threads=1, batch_size=1, seq_len=None, warmup=1, min_iterations=3, min_time_s=0.0,
              energy="none")
    pt = bench_artifact(model, "local", **kw)
    assert (pt["name"], pt["role"], pt["format"], pt["runtime"], pt["accuracy"]) == \
        ("student-pytorch-fp32", "student", "pytorch", "torch", 0.5)
    tfl = bench_artifact(tflite_dir / "model.tflite", "local", **kw)  # a file inside an export folder
    assert tfl["name"] == "student-tflite-fp32" and tfl["runtime"] == "ai_edge_litert"


def test_bare_file_takes_its_name_from_the_stem(onnx_dir, tmp_path):
    shutil.copy(onnx_dir / "model.onnx", tmp_path / "mini.onnx")
    shutil.copy(onnx_dir / "inputs.npz", tmp_path)
    art = resolve_artifact(tmp_path / "mini.onnx")
    assert (art.name, art.role, art.format, art.precision) == ("mini", None, "onnx", None)


def bad(tmp_path, onnx_dir, case) -> Path:
    folder = tmp_path / case
    shutil.copytree(onnx_dir, folder)
    export = json.loads((folder / "export.json").read_text())
    if case == "failed-export":
        export.update(status="failed", error="parity 0.4 below 0.99")
    elif case == "no-inputs":
        (folder / "inputs.npz").unlink()
    elif case == "corrupt":
        (folder / "model.onnx").write_bytes(b"\x00garbage" * 100)
    elif case == "empty":
        (folder / "model.onnx").write_bytes(b"")
    elif case == "missing-file":
        (folder / "model.onnx").unlink()
    (folder / "export.json").write_text(json.dumps(export))
    return folder


@pytest.mark.parametrize("case, message", [
    ("failed-export", "export failed .*parity 0.4"),
    ("no-inputs", "no inputs.npz next to"),
    ("corrupt", "runner on model.onnx failed"),
    ("empty", "is empty"),
    ("missing-file", "names artifact 'model.onnx', which is missing"),
])
def test_bad_artifacts_fail_cleanly_with_no_result_file(tmp_path, onnx_dir, capsys, case, message):
    folder = bad(tmp_path, onnx_dir, case)
    out = tmp_path / "out.json"
    assert main(["bench", str(onnx_dir), str(folder), *FAST, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert __import__("re").search(message, err[-1]) and err[-1].startswith("edgekd bench: error:")
    assert not out.exists() and not list(tmp_path.glob(".out.json*"))


def test_missing_artifact_and_bad_arguments(tmp_path, capsys):
    assert main(["bench", str(tmp_path / "nope.onnx"), "--out", str(tmp_path / "o.json")]) == 2
    assert "artifact not found" in capsys.readouterr().err
    assert main(["bench", str(tmp_path), "--threads", "0", "--out", str(tmp_path / "o.json")]) == 2
    assert not (tmp_path / "o.json").exists()


def test_a_hung_run_times_out(onnx_dir):
    with pytest.raises(EdgekdError, match="did not finish within 2 s"):
        bench_artifact(onnx_dir, "local", threads=1, batch_size=1, seq_len=None, warmup=1,
                       min_iterations=1, min_time_s=60, energy="none", timeout_s=2)


def test_static_batch_artifact_is_refused_before_measuring(tflite_dir):
    with pytest.raises(EdgekdError, match="exported for batch 1 .* cannot run batch 4"):
        bench_artifact(tflite_dir, "local", threads=1, batch_size=4, seq_len=None, warmup=1,
                       min_iterations=1, min_time_s=0, energy="none")


def test_verification_and_runner_use_the_same_adapter_and_settings(openvino_dir, tmp_path,
                                                                   monkeypatch):
    """What was verified is what is measured: the runner on the target opens the artifact with
    the adapter and settings verification recorded in export.json."""
    import edgekd.benchmarks.runtimes as runtimes

    record = json.loads((openvino_dir / "export.json").read_text())
    entry = bench_artifact(openvino_dir, "local", threads=1, batch_size=1, seq_len=None,
                           warmup=1, min_iterations=2, min_time_s=0, energy="none")
    assert entry["runtime"] == "openvino"
    assert entry["runtime_settings"] == record["runtime_settings"]
    assert entry["runtime_settings"]["INFERENCE_PRECISION_HINT"] == "f32"
    # and both come from one function, called by both sides
    opened = []
    real = runtimes.open_adapter
    monkeypatch.setattr(runtimes, "open_adapter",
                        lambda *a, **k: opened.append((a, k)) or real(*a, **k))
    from edgekd.benchmarks import runner
    from edgekd.exporters.verify import verify_artifact
    from edgekd.tasks import get_task

    inputs = dict(np.load(openvino_dir / "inputs.npz"))
    labels = inputs.pop("labels")
    task = get_task()
    reference = runtimes.run_outputs(real(str(openvino_dir / "model.xml"))[0], inputs)
    verify_artifact(openvino_dir / "model.xml", "openvino", "fp32", task=task,
                    reference=reference, inputs=inputs, labels=labels)
    out = runner.benchmark(runner.parse_args([
        "--model", str(openvino_dir / "model.xml"), "--inputs", str(openvino_dir / "inputs.npz"),
        "--precision", "fp32", "--warmup", "0", "--min-iterations", "1", "--min-time", "0",
        "--energy", "none"]))
    assert len(opened) == 2 and opened[0][1]["precision"] == opened[1][1]["precision"] == "fp32"
    assert out["runtime_settings"] == record["runtime_settings"]


def test_failed_entry_keeps_identity(onnx_dir):
    entry = failed_entry(onnx_dir, "local", 4, "target unreachable")
    assert entry["status"] == "failed" and entry["name"] == "student-onnx-fp32"
    assert entry["latency_ms"] is None and entry["error"] == "target unreachable"


@pytest.fixture
def runner_calls(monkeypatch):
    """The artifacts the local target really runs, in order (recorded, not replaced)."""
    from edgekd.targets.local import LocalTarget

    calls = []
    real = LocalTarget.run_runner

    def recording(self, artifact, inputs, options, timeout_s):
        calls.append(Path(artifact).name)
        return real(self, artifact, inputs, options, timeout_s)

    monkeypatch.setattr(LocalTarget, "run_runner", recording)
    return calls


def test_repeats_are_fresh_processes_interleaved_and_all_kept(onnx_dir, openvino_dir, tmp_path,
                                                              runner_calls):
    out = tmp_path / "bench.json"
    assert main(["bench", str(onnx_dir), str(openvino_dir), "--repeats", "3", "--energy", "none",
                 *FAST, "--out", str(out)]) == 0
    # repeat 1 of every artifact, then repeat 2, then repeat 3
    assert runner_calls == ["model.onnx", "model.xml"] * 3
    for entry in json.loads(out.read_text())["entries"]:
        reps = entry["repeats"]
        assert len(reps) == 3
        assert entry["samples_ms"] == [x for r in reps for x in r["samples_ms"]]   # pooled
        assert entry["latency_ms"]["n"] == sum(r["latency_ms"]["n"] for r in reps)
        assert entry["load_time_ms"] == sorted(r["load_time_ms"] for r in reps)[1]  # median
        env = entry["environment"]       # described by the runner, on the target
        assert env["cpu"]["model"] and env["cpu"]["cores_logical"] >= 1
        assert env["runtimes"][entry["runtime"]] == entry["runtime_version"]
        assert env["memory_total_mb"] > 0 and env["os"]


def test_repeats_must_be_positive(onnx_dir, tmp_path, capsys, runner_calls):
    assert main(["bench", str(onnx_dir), "--repeats", "0", "--out", str(tmp_path / "o.json")]) == 2
    assert "--repeats must be >= 1" in capsys.readouterr().err and not runner_calls


def test_a_stored_entry_gets_more_repeats_only_when_measured_the_same_way(onnx_dir):
    from edgekd.benchmarks.bench import is_complete, measure_round_robin, prepare

    m = prepare(onnx_dir, "local", threads=1, batch_size=1, seq_len=None, warmup=1,
                min_iterations=3, min_time_s=0, energy="none")
    (one,) = measure_round_robin([m], 1)
    assert not is_complete(one, 2) and is_complete(one, 1)
    two = m.entry(m.run_once(), one)
    assert len(two["repeats"]) == 2 and is_complete(two, 2)
    assert two["repeats"][0] == one["repeats"][0]
    other_runtime = {**one, "runtime_version": "0.0.1"}
    assert len(m.entry(m.run_once(), other_runtime)["repeats"]) == 1   # started over


def test_bench_stage_interleaves_repeats_and_resumes_per_repeat(onnx_dir, openvino_dir, tmp_path,
                                                                runner_calls):
    """`edgekd run`'s bench stage: round-robin over the jobs, one file per entry rewritten after
    every repeat, a rerun adds only the missing repeats (here the teacher and student folders are
    missing: their jobs fail once, are recorded, and are not retried within the run)."""
    from types import SimpleNamespace

    from edgekd.recipe import BenchConfig
    from edgekd.stages import bench_stage

    run = tmp_path / "run"
    for folder in (onnx_dir, openvino_dir):
        shutil.copytree(folder, run / "exports" / json.loads(
            (folder / "export.json").read_text())["name"])

    def recipe(repeats):
        return SimpleNamespace(seq_len=16, bench=BenchConfig(
            targets=["local"], threads=[1], warmup=1, min_iterations=3, min_time_s=0,
            energy="none", repeats=repeats))

    entries = bench_stage(recipe(2), run)
    assert runner_calls == ["model.onnx", "model.xml"] * 2
    by_name = {e["name"]: e for e in entries}
    assert by_name["teacher"]["status"] == by_name["student"]["status"] == "failed"
    files = {p.name: json.loads(p.read_text()) for p in (run / "bench" / "local").glob("*.json")}
    onnx_file = next(n for n in files if n.startswith("student-onnx-fp32-t1-b1-"))
    assert [len(f.get("repeats") or []) for n, f in sorted(files.items())
            if f["status"] == "ok"] == [2, 2]
    # an interrupted run: the ONNX entry holds one repeat only
    partial = files[onnx_file]
    partial["repeats"] = partial["repeats"][:1]
    (run / "bench" / "local" / onnx_file).write_text(json.dumps(partial))
    runner_calls.clear()
    bench_stage(recipe(2), run)
    assert runner_calls == ["model.onnx"]
    # asking for more repeats measures the missing ones, again interleaved
    runner_calls.clear()
    entries = bench_stage(recipe(3), run)
    assert runner_calls == ["model.onnx", "model.xml"]
    assert sorted(len(e["repeats"]) for e in entries if e["status"] == "ok") == [3, 3]
