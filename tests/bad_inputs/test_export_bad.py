"""Bad inputs to `edgekd export`: refused before any model is loaded or converted, with no
`.partial` staging folder left beside --out."""

from __future__ import annotations

import pytest

LONG_NAME = "x" * 300


def test_out_is_an_existing_file(refuse, work, tiny_model_dir):
    (work / "model.onnx").write_text("an earlier file\n")
    refuse(["export", tiny_model_dir, "--format", "onnx", "--out", work / "model.onnx"],
           ("model.onnx", "not a folder"))


def test_out_inside_a_read_only_folder(refuse, read_only_dir, tiny_model_dir):
    refuse(["export", tiny_model_dir, "--format", "onnx", "--out", read_only_dir / "onnx"],
           ("cannot write", str(read_only_dir)))


def test_out_name_too_long(refuse, work, tiny_model_dir):
    refuse(["export", tiny_model_dir, "--format", "onnx", "--out", work / LONG_NAME], "too long")


def test_out_name_too_long_with_the_staging_suffix(refuse, work, tiny_model_dir):
    # 250 characters fit the file system, `.<name>.partial` (the staging folder) does not.
    refuse(["export", tiny_model_dir, "--format", "onnx", "--out", work / ("y" * 250)], "too long")


def test_out_below_a_file(refuse, work, tiny_model_dir):
    (work / "plain").write_text("a file\n")
    refuse(["export", tiny_model_dir, "--format", "onnx", "--out", work / "plain" / "onnx"],
           ("plain", "not a folder"))


def test_model_folder_missing(refuse, work):
    refuse(["export", work / "nowhere", "--format", "onnx", "--out", work / "o"],
           ("model folder not found", "nowhere"))


def test_model_folder_without_config(refuse, work):
    (work / "empty-model").mkdir()
    refuse(["export", work / "empty-model", "--format", "onnx", "--out", work / "o"], "config.json")


def test_model_folder_without_weights(refuse, work, teacher_copy):
    (teacher_copy / "model.safetensors").unlink()
    refuse(["export", teacher_copy, "--format", "onnx", "--out", work / "o"], "no .safetensors")


def test_truncated_weights(refuse, work, teacher_copy):
    weights = teacher_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    refuse(["export", teacher_copy, "--format", "onnx", "--out", work / "o"],
           ("model.safetensors", "truncated"))


@pytest.mark.parametrize("fmt,precision", [("onnx", "int3"), ("onnx", "bf16"), ("tflite", "bf16")])
def test_precision_the_format_cannot_export(refuse, work, tiny_model_dir, fmt, precision):
    refuse(["export", tiny_model_dir, "--format", fmt, "--precision", precision, "--out", work / "o"],
           (fmt, precision))


def test_int8_static_without_data(refuse, work, tiny_model_dir):
    refuse(["export", tiny_model_dir, "--format", "onnx", "--precision", "int8-static",
            "--out", work / "o"], ("int8-static", "--data"))


def test_calibration_samples_zero(refuse, work, tiny_model_dir):
    refuse(["export", tiny_model_dir, "--format", "onnx", "--calibration-samples", "0",
            "--out", work / "o"], "--calibration-samples")


def test_seq_len_one(refuse, work, tiny_model_dir):
    refuse(["export", tiny_model_dir, "--format", "onnx", "--seq-len", "1", "--out", work / "o"],
           "--seq-len")


def test_seq_len_longer_than_the_positions(refuse, work, tiny_model_dir):
    refuse(["export", tiny_model_dir, "--format", "onnx", "--seq-len", "4096", "--out", work / "o"],
           ("4096", "positions"))


def test_data_missing(refuse, work, tiny_model_dir):
    refuse(["export", tiny_model_dir, "--format", "onnx", "--data", work / "no-data",
            "--out", work / "o"], "no-data")


def test_data_labels_do_not_fit_the_model(refuse_in_subprocess, work, tiny_model_dir):
    # Found after the exporter and its converters are imported: stderr still carries only the
    # error line, none of the libraries' start-up warnings.
    data = work / "two-labels"
    for label in ("a", "b", "c", "d"):
        (data / label).mkdir(parents=True)
        for i in range(6):
            (data / label / f"{i}.txt").write_text(f"match goal team {label} {i}\n")
    refuse_in_subprocess(["export", tiny_model_dir, "--format", "onnx", "--data", data,
                          "--out", work / "o"], "labels")


def test_config_that_does_not_fit_the_weights(refuse_in_subprocess, work, teacher_copy):
    # Found after torch and transformers (which import torchao and its warnings) are loaded, in
    # a real interpreter: stderr still holds the one line.
    import json

    config = json.loads((teacher_copy / "config.json").read_text())
    config["intermediate_size"] = 128  # the weights were saved with 256
    (teacher_copy / "config.json").write_text(json.dumps(config))
    refuse_in_subprocess(["export", teacher_copy, "--format", "onnx", "--out", work / "o"],
                         ("do not fit its config.json", "intermediate"))
