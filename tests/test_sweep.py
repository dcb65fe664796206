"""`edgekd sweep`: variants through the whole path, a shared teacher, one comparison report."""

import json
import subprocess
import sys

import pytest

from edgekd.cli import main


def write_sweep(folder, recipe):
    path = folder / "sweep.yaml"
    path.write_text(f"""\
recipe: {recipe}
set: {{distill.epochs: 3, teacher.fine_tune.epochs: 4, export.precisions: [fp32],
       student.width: {{ffn: 0.5, calibration_samples: 16}}}}
variants:
  - name: kd
  - name: no-kd
    set: {{distill.alpha: 0.0}}
""")
    return path


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory, tiny_data_dir, tiny_model_dir):
    from tests_recipe import write_tiny_recipe

    folder = tmp_path_factory.mktemp("sweep")
    recipe = write_tiny_recipe(folder, tiny_data_dir, tiny_model_dir)
    out = folder / "out"
    proc = subprocess.run([sys.executable, "-m", "edgekd", "sweep", str(write_sweep(folder, recipe)),
                           "--out", str(out)], capture_output=True, text=True, timeout=900)
    return out, proc


def test_sweep_runs_every_variant_and_compares_them(sweep_run):
    out, proc = sweep_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    document = json.loads((out / "sweep.json").read_text())
    assert [v["name"] for v in document["variants"]] == ["kd", "no-kd"]
    for variant in document["variants"]:
        assert (out / variant["name"] / "report.json").is_file()
        names = {a["name"] for a in variant["artifacts"]}
        assert names == {"student-pytorch-fp32", "student-onnx-fp32"}
        assert all(a["accuracy"] is not None and a["p50_ms"] > 0 for a in variant["artifacts"])
    assert [v["distilled"] for v in document["variants"]] == [True, False]
    # the pruned student (half the FFN, one of two layers) does fewer operations per inference
    for variant in document["variants"]:
        assert variant["student"]["width"]["ffn"] == 0.5
        assert 0 < variant["artifacts"][0]["gflop"] < variant["teacher"]["gflop"] / 2
    # the distilled variant is paired with its labels-only twin
    assert [(b["distilled"], b["baseline"]) for b in document["baselines"]] == [("kd", "no-kd")]
    assert document["pareto"]["latency"] and document["pareto"]["size"]
    assert "What distillation adds" in (out / "sweep.md").read_text()
    assert (out / "sweep.html").read_text().count("<svg") == 2


def test_the_teacher_is_trained_once_and_shared(sweep_run):
    out, proc = sweep_run
    assert proc.stdout.count("teacher: fine-tuning") == 1
    inode = (out / "kd" / "teacher" / "model.safetensors").stat().st_ino
    assert (out / "no-kd" / "teacher" / "model.safetensors").stat().st_ino == inode


def test_a_bad_variant_is_refused_before_any_work(tmp_path, tiny_data_dir, tiny_model_dir, capsys):
    from tests_recipe import write_tiny_recipe

    recipe = write_tiny_recipe(tmp_path, tiny_data_dir, tiny_model_dir)
    path = tmp_path / "bad.yaml"
    path.write_text(f"recipe: {recipe}\nvariants:\n  - name: ok\n  - name: bad\n"
                    "    set: {student.width: {hidden: 2.0}}\n")
    code = main(["sweep", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "a fraction must be in (0, 1)" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "bad").exists() and not (tmp_path / "out" / "ok" / "teacher").exists()
