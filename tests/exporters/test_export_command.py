"""`edgekd export` end to end through the real CLI entry point."""

from __future__ import annotations

import json
import shutil

import pytest

from edgekd.cli import main

SEQ = ["--seq-len", "32"]


def test_export_with_data_verifies_on_the_test_split(export_model_dir, tiny_data_dir, tmp_path,
                                                     capsys):
    out = tmp_path / "onnx-int8"
    code = main(["export", str(export_model_dir), "--format", "onnx", "--precision",
                 "int8-static", "--data", str(tiny_data_dir), "--calibration-samples", "16",
                 *SEQ, "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    record = json.loads((out / "export.json").read_text())
    assert record["status"] == "ok" and record["accuracy"] >= 0.9   # the model learnt the task
    assert record["settings"]["calibration_samples"] == 16
    assert record["role"] == "student"                               # folder named student/
    assert "student-onnx-int8-static" in printed and "ok" in printed


def test_export_with_a_recipe_takes_its_sequence_length(export_model_dir, tiny_data_dir, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: r\ndata:\n  path: {tiny_data_dir}\n  max_length: 24\n"
                      f"teacher:\n  model: {export_model_dir}\n"
                      "student:\n  from_teacher: {layers: [0]}\n")
    out = tmp_path / "ov"
    assert main(["export", str(export_model_dir), "--format", "openvino", "--data", str(recipe),
                 "--out", str(out)]) == 0
    record = json.loads((out / "export.json").read_text())
    assert record["seq_len"] == 24 and record["precision"] == "fp32"


def test_failed_verification_exits_1_naming_the_artifact(export_model_dir, tiny_data_dir,
                                                         broken_converter, tmp_path, capsys):
    model_dir = tmp_path / "teacher"
    shutil.copytree(export_model_dir, model_dir)
    broken_converter("onnx")
    out = tmp_path / "bad"
    code = main(["export", str(model_dir), "--format", "onnx", "--precision", "int8-dynamic",
                 "--data", str(tiny_data_dir), *SEQ, "--out", str(out)])
    printed = capsys.readouterr().err
    assert code == 1
    assert "teacher-onnx-int8-dynamic failed verification" in printed
    assert (out / "model.onnx").is_file()


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    from tiny_lm import save_tiny_lm

    return save_tiny_lm(tmp_path_factory.mktemp("llama") / "llama", "llama", layers=2)


@pytest.mark.parametrize("argv,message", [
    (["--format", "onnx", "--precision", "int8-static"], "int8-static needs calibration"),
    (["--format", "onnx", "--calibration-samples", "0"], "--calibration-samples must be >= 1"),
    (["--format", "onnx", "--data", "/nonexistent/data"], "data path not found"),
    (["--format", "openvino", "--int4-group-size", "64"], "applies to --precision int4 only"),
    (["--format", "openvino", "--precision", "int4", "--int4-group-size", "100"],
     "--int4-group-size must be a power of two"),
    (["--format", "openvino", "--int4-ratio", "0.5"], "--int4-ratio applies to --precision int4 only"),
    (["--format", "openvino", "--precision", "int4", "--task", "causal-lm", "--int4-ratio", "2"],
     "--int4-ratio must be a fraction in (0, 1]"),
    (["--format", "openvino", "--precision", "int4", "--task", "causal-lm", "--int4-data-aware"],
     "--int4-data-aware needs calibration text"),
    (["--format", "onnx", "--precision", "int4", "--task", "causal-lm", "--int4-ratio", "0.5"],
     "onnx int4 does not take export.int4_ratio"),
])
def test_user_mistakes_are_one_line_errors(argv, message, export_model_dir, tiny_llama, tmp_path,
                                           capsys):
    out = tmp_path / "out"
    model_dir = tiny_llama if "causal-lm" in argv else export_model_dir
    code = main(["export", str(model_dir), *argv, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_task_the_model_does_not_compute_is_refused_before_any_work(export_model_dir, tmp_path,
                                                                      capsys):
    out = tmp_path / "out"
    code = main(["export", str(export_model_dir), "--format", "onnx", "--task", "causal-lm",
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "is not a causal language model (BertForSequenceClassification)" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_not_a_model_folder_is_a_one_line_error(tiny_data_dir, tmp_path, capsys):
    code = main(["export", str(tiny_data_dir), "--format", "onnx", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "not a model folder" in err and len(err.strip().splitlines()) == 1


def test_data_with_other_labels_than_the_model_is_refused(export_model_dir, tmp_path, capsys):
    data = tmp_path / "two-labels"
    for label in ("a", "b"):
        (data / label).mkdir(parents=True)
        for i in range(6):
            (data / label / f"{i}.txt").write_text(f"the match {label} {i}\n")
    code = main(["export", str(export_model_dir), "--format", "onnx", "--data", str(data),
                 "--out", str(tmp_path / "o")])
    assert code == 2 and "the model has 3 labels but the data has 2" in capsys.readouterr().err


def test_a_causal_lm_exports_its_own_precisions_with_options(tmp_path, capsys):
    """`--task causal-lm` checks the LM precisions and passes --int4-group-size to the exporter,
    which records it; a *ForCausalLM is a causal-lm without --task, and not a classifier."""
    from tiny_lm import save_tiny_lm

    model_dir = save_tiny_lm(tmp_path / "llama", "llama", layers=2)
    out = tmp_path / "onnx-int4"
    code = main(["export", str(model_dir), "--format", "onnx", "--precision", "int4",
                 "--task", "causal-lm", "--int4-group-size", "16", *SEQ, "--out", str(out)])
    assert code == 0, capsys.readouterr().out
    record = json.loads((out / "export.json").read_text())
    assert record["status"] == "ok" and record["precision"] == "int4"
    assert record["options"] == {"int4_group_size": 16} and record["settings"]["group_size"] == 16
    code = main(["export", str(model_dir), "--format", "onnx", "--precision", "int4",
                 "--task", "text-classification", *SEQ, "--out", str(tmp_path / "classifier")])
    err = capsys.readouterr().err
    assert code == 2 and "is a causal language model (LlamaForCausalLM)" in err
    assert not (tmp_path / "classifier").exists()
    # Without --task, the config's *ForCausalLM makes it a causal-lm export.
    code = main(["export", str(model_dir), "--format", "onnx", *SEQ, "--out", str(tmp_path / "told")])
    assert code == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "told" / "export.json").read_text())["task"] == "causal-lm"
    code = main(["export", str(model_dir), "--format", "onnx", "--task", "causal-lm",
                 "--data", str(tmp_path), "--out", str(tmp_path / "with-data")])
    err = capsys.readouterr().err
    assert code == 2 and "--data must be a recipe" in err and len(err.strip().splitlines()) == 1
