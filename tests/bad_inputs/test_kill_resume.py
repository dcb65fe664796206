"""`edgekd run` killed with SIGKILL once in every stage (teacher fine-tune, student training,
export, bench) and rerun each time: the run completes, and what it computed is what an
uninterrupted run computes (same trained weights, same exports and their checks).

Kills are triggered by the run folder's state, not by time, so the test does not depend on the
machine's speed: a finished epoch checkpoint of the teacher, then of the student, the first
export folder, the first bench result.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests_recipe import write_tiny_recipe

EPOCHS = ["--set", "teacher.fine_tune.epochs=4", "--set", "distill.epochs=4"]
EXPORTS = ("student-onnx-fp32", "student-onnx-int8-dynamic", "teacher-onnx-fp32")


def _command(recipe: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "edgekd", "run", str(recipe), "--out", str(out), *EPOCHS]


def _finished_checkpoint(folder: Path) -> bool:
    # trainer_state.json is the last file the Trainer writes into a checkpoint
    return any(folder.glob("checkpoint-*/trainer_state.json"))


def _files(folder: Path, pattern: str) -> list[Path]:
    return [p for p in folder.glob(pattern) if not p.name.startswith(".")]


def run_and_kill(command: list[str], cwd: Path, ready, log: Path, timeout_s: float = 600) -> None:
    """Start `command`, SIGKILL it as soon as `ready()` holds; fail if it ends before that."""
    with open(log, "ab") as stream:
        proc = subprocess.Popen(command, cwd=cwd, stdout=stream, stderr=stream,
                                start_new_session=True)
    deadline = time.monotonic() + timeout_s
    try:
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"the run ended (exit {proc.returncode}) before the kill point:\n"
                            + log.read_text(errors="replace")[-3000:])
            if time.monotonic() > deadline:
                pytest.fail("the kill point was not reached in time")
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        # A runner the killed run had started is an orphan in its session: end it too.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=60)


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def _export_checks(run: Path, name: str) -> dict:
    record = json.loads((run / "exports" / name / "export.json").read_text())
    return {k: record[k] for k in ("status", "parity", "accuracy", "metrics", "size_bytes")}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, tiny_data_dir, tiny_model_dir) -> Path:
    folder = tmp_path_factory.mktemp("reference")
    recipe = write_tiny_recipe(folder, tiny_data_dir, tiny_model_dir)
    proc = subprocess.run(_command(recipe, folder / "run"), cwd=folder, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder / "run"


def test_kill_in_every_stage_then_rerun_gives_the_same_results(tmp_path, tiny_data_dir,
                                                              tiny_model_dir, reference_run):
    import torch

    recipe = write_tiny_recipe(tmp_path, tiny_data_dir, tiny_model_dir)
    run, log = tmp_path / "run", tmp_path / "run.log"
    command = _command(recipe, run)

    run_and_kill(command, tmp_path, lambda: _finished_checkpoint(run / "checkpoints" / "teacher"), log)
    assert not (run / "teacher").exists()          # killed while fine-tuning the teacher

    run_and_kill(command, tmp_path, lambda: _finished_checkpoint(run / "checkpoints" / "student"), log)
    assert (run / "teacher" / "metrics.json").is_file() and not (run / "student").exists()

    run_and_kill(command, tmp_path, lambda: bool(_files(run / "exports", "*/export.json")), log)
    assert len(_files(run / "exports", "*/export.json")) < len(EXPORTS)

    run_and_kill(command, tmp_path, lambda: bool(_files(run / "bench", "*/*.json")), log)
    assert not (run / "report.json").exists()

    final = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert final.returncode == 0, final.stderr[-3000:]

    for role in ("teacher", "student"):
        got, want = _weights(run / role), _weights(reference_run / role)
        assert got.keys() == want.keys()
        for key in want:
            assert torch.equal(got[key], want[key]), f"{role} {key} differs after the resumes"
    for name in EXPORTS:
        assert _export_checks(run, name) == _export_checks(reference_run, name), name
    report = json.loads((run / "report.json").read_text())
    measured = {e["name"] for e in report["entries"] if e["status"] == "ok"}
    assert measured == {"teacher-pytorch-fp32", "student-pytorch-fp32", *EXPORTS}
    assert not list(run.rglob("*.partial")) and not list(run.rglob(".*.tmp"))
