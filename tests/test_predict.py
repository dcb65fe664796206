"""`edgekd predict`: label and top-k probabilities from an export bundle; truncation is said;
bad input is one line on stderr and exit code 2."""

from __future__ import annotations

import json
import shutil

import pytest

from edgekd.cli import main

SEQ_LEN = 16


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_model_dir):
    """An ONNX fp32 export (bundle) of the tiny model."""
    from edgekd.exporters import export_artifact

    folder = tmp_path_factory.mktemp("predict") / "model-onnx-fp32"
    export_artifact(tiny_model_dir, "onnx", "fp32", folder, role=None, seq_len=SEQ_LEN,
                    eval_inputs=None)
    return folder


def predict_json(capsys, *args) -> dict:
    capsys.readouterr()
    assert main(["predict", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def one_line_error(capsys, *args) -> str:
    capsys.readouterr()
    assert main(["predict", *map(str, args)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_prints_the_label_and_top_k(bundle, capsys):
    labels = json.loads((bundle / "labels.json").read_text())
    capsys.readouterr()
    assert main(["predict", str(bundle), "goal match team", "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].endswith("goal match team")
    shown = [line.split()[1] for line in lines[1:]]
    assert lines[0].split("\t")[0] == shown[0] and set(shown) <= set(labels)


def test_json_probabilities_are_the_artifacts_softmax(bundle, capsys, tiny_model_dir):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgekd.data import encode

    texts = ["goal match team", "vote election party", "chip software code"]
    result = predict_json(capsys, bundle, *texts, "--top-k", "3")
    assert [p["text"] for p in result["predictions"]] == texts
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).eval()
    enc = encode(AutoTokenizer.from_pretrained(tiny_model_dir), texts, SEQ_LEN)
    with torch.no_grad():
        probs = torch.softmax(model(**{k: torch.from_numpy(v) for k, v in enc.items()}).logits,
                              -1).numpy()
    for row, prediction in zip(probs, result["predictions"]):
        got = {item["label"]: item["probability"] for item in prediction["top_k"]}
        assert len(got) == 3 and abs(sum(got.values()) - 1) < 1e-5
        for i, p in enumerate(row):
            assert got[model.config.id2label[i]] == pytest.approx(float(p), abs=1e-4)
        assert prediction["label"] == model.config.id2label[int(row.argmax())]
        assert prediction["truncated"] is False


def test_long_text_is_truncated_and_a_note_says_so(bundle, capsys):
    long_text = " ".join(["goal"] * 40)
    short = " ".join(["goal"] * (SEQ_LEN - 2))  # the same first SEQ_LEN tokens
    capsys.readouterr()
    assert main(["predict", str(bundle), "match", long_text, "--json"]) == 0
    captured = capsys.readouterr()
    assert "text 2 has 42 tokens" in captured.err and f"sequence length {SEQ_LEN}" in captured.err
    assert "text 1" not in captured.err
    predictions = json.loads(captured.out)["predictions"]
    assert [p["truncated"] for p in predictions] == [False, True]
    same = predict_json(capsys, bundle, short)["predictions"][0]
    assert predictions[1]["top_k"] == same["top_k"]


def test_file_of_texts_skips_blank_lines(bundle, capsys, tmp_path):
    (tmp_path / "texts.txt").write_text("goal match\n\n   \nvote party\n")
    result = predict_json(capsys, bundle, "chip code", "--file", tmp_path / "texts.txt")
    assert [p["text"] for p in result["predictions"]] == ["chip code", "goal match", "vote party"]


def test_artifact_file_and_folder_give_the_same(bundle, capsys):
    by_folder = predict_json(capsys, bundle, "goal match")
    by_file = predict_json(capsys, bundle / "model.onnx", "goal match")
    assert by_folder == by_file


@pytest.mark.parametrize("args, message", [
    (["", ], "text 1 is empty"),
    (["fine", "  "], "text 2 is empty"),
    ([], "no text given"),
    (["x", "--top-k", "0"], "--top-k must be at least 1"),
    (["x", "--target", "ssh://pi@board"], "runs on this machine only"),
    (["x", "--file", "/nonexistent/texts.txt"], "cannot read texts"),
])
def test_bad_input_is_one_line_and_exit_2(bundle, capsys, args, message):
    assert message in one_line_error(capsys, bundle, *args)


def test_not_an_export_folder(tmp_path, capsys, tiny_model_dir):
    assert "not found" in one_line_error(capsys, tmp_path / "missing", "x")
    assert "has no export.json" in one_line_error(capsys, tiny_model_dir, "x")


def test_failed_export_is_refused(bundle, tmp_path, capsys):
    failed = tmp_path / "failed"
    shutil.copytree(bundle, failed)
    record = json.loads((failed / "export.json").read_text())
    record.update(status="failed", error="top-1 agreement with PyTorch 10% is below 99%")
    (failed / "export.json").write_text(json.dumps(record))
    assert "the export failed (top-1 agreement" in one_line_error(capsys, failed, "x")


def test_empty_file_is_refused(bundle, tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("\n \n")
    assert "holds no text" in one_line_error(capsys, bundle, "--file", tmp_path / "empty.txt")


def test_help_names_what_predict_does(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    out = capsys.readouterr().out
    assert "truncated" in out and "--top-k" in out and "this machine" in out


def test_fast_encoding_is_the_transformers_encoding(bundle, tiny_model_dir):
    """predict reads tokenizer.json with `tokenizers` alone (no transformers import on a cold
    start); it must encode exactly as export and verification do (edgekd.data.encode)."""
    import random

    import numpy as np
    from transformers import AutoTokenizer

    from edgekd.data import encode
    from edgekd.predict import fast_encoder
    from tiny import LABEL_WORDS, make_text

    rng = random.Random(1)
    texts = [make_text(rng, label, length=rng.randrange(1, 30)) for label in LABEL_WORDS
             for _ in range(5)] + ["UPPER Case, punctuation!", "unknownword goal"]
    got, lengths = fast_encoder(bundle, SEQ_LEN)(texts)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    expected = encode(tokenizer, texts, SEQ_LEN)
    assert sorted(expected) == sorted(got)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])
    assert lengths == [len(ids) for ids in tokenizer(texts)["input_ids"]]
    assert max(lengths) > SEQ_LEN  # truncation was exercised


def test_bundle_without_tokenizer_json_uses_transformers(bundle, tmp_path, capsys):
    copy = tmp_path / "no-tokenizer-json"
    shutil.copytree(bundle, copy)
    (copy / "tokenizer.json").unlink()
    texts = ["goal match team", " ".join(["vote"] * 30)]
    assert predict_json(capsys, copy, *texts) == predict_json(capsys, bundle, *texts)
