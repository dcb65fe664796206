"""A genuinely smaller student: width pruning and vocabulary trimming before distillation, on the
tiny teacher (width 64, 2 heads, FFN 256) and the generated keyword task."""

from argparse import Namespace

import numpy as np
import pytest

from edgekd.cli import main
from edgekd.files import read_json
from edgekd.pipeline import distill_stage, prepare

OVERRIDES = ["teacher.fine_tune.epochs=8", "teacher.fine_tune.learning_rate=2e-3",
             "distill.epochs=8", "distill.learning_rate=2e-3",
             "student.width={hidden: 32, ffn: 0.5, calibration_samples: 32}",
             "student.vocabulary={trim: true}"]


UNUSED_WORDS = [f"unused{i}" for i in range(40)] + ["##s", "##ing", "##ed"]


@pytest.fixture(scope="module")
def wide_vocab_teacher(tmp_path_factory, tiny_model_dir):
    """The tiny teacher with 43 vocabulary entries the task's text never uses (a real teacher's
    vocabulary is mostly words a given task never sees)."""
    import shutil

    from transformers import AutoModelForSequenceClassification, BertTokenizerFast

    folder = tmp_path_factory.mktemp("wide-vocab") / "teacher"
    shutil.copytree(tiny_model_dir, folder)
    vocab = (folder / "vocab.txt").read_text().split() + UNUSED_WORDS
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (folder / "tokenizer.json").unlink(missing_ok=True)
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    model.resize_token_embeddings(len(vocab))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def shrunk_run(tmp_path_factory, tiny_data_dir, wide_vocab_teacher):
    from tests_recipe import write_tiny_recipe

    recipe = write_tiny_recipe(tmp_path_factory.mktemp("recipe"), tiny_data_dir,
                               wide_vocab_teacher)
    run_dir = tmp_path_factory.mktemp("runs") / "shrunk"
    args = Namespace(recipe=str(recipe), out=str(run_dir), overrides=OVERRIDES)
    return run_dir, distill_stage(prepare(args))


def test_student_is_pruned_trimmed_and_still_learns(shrunk_run, tiny_data_dir):
    from transformers import AutoConfig, AutoTokenizer

    run_dir, result = shrunk_run
    student = AutoConfig.from_pretrained(run_dir / "student")
    teacher = AutoConfig.from_pretrained(run_dir / "teacher")
    assert (student.hidden_size, student.intermediate_size) == (32, 128)
    # BERT derives head size from hidden/heads: hidden 32 holds one head of the teacher's size 32
    assert student.num_attention_heads == 1 and teacher.num_attention_heads == 2
    shrink = result.student_metrics["shrink"]
    assert shrink["width"]["hidden"] == 32 and shrink["width"]["ffn"] == 128
    assert shrink["parameters_after"] < shrink["parameters_before"] / 2
    assert result.student_metrics["parameters"] == shrink["parameters_after"]
    # the trimmed vocabulary: only what the training text uses, the map saved beside the model
    vocab = read_json(run_dir / "student" / "vocab_map.json")["student_to_teacher"]
    assert student.vocab_size == len(vocab) < teacher.vocab_size - 40
    kept = set(AutoTokenizer.from_pretrained(run_dir / "student").get_vocab())
    assert not any(word.startswith("unused") for word in kept)   # the words no text uses
    teacher_tok = AutoTokenizer.from_pretrained(run_dir / "teacher")
    student_tok = AutoTokenizer.from_pretrained(run_dir / "student")
    text = "the match and the goal of the team today"
    ids_t = teacher_tok(text)["input_ids"]
    ids_s = student_tok(text)["input_ids"]
    assert [vocab[i] for i in ids_s] == ids_t           # same tokens, student ids
    assert result.student_metrics["accuracy"] >= 0.8    # three keyword classes: still learnt
    assert not (run_dir / "checkpoints").exists()       # resume state removed once finished


def test_the_shrunk_student_exports_and_verifies_with_its_own_tokenizer(shrunk_run, tmp_path,
                                                                        tiny_data_dir):
    run_dir, _ = shrunk_run
    out = tmp_path / "student-onnx-fp32"
    assert main(["export", str(run_dir / "student"), "--format", "onnx", "--data",
                 str(tiny_data_dir), "--seq-len", "32", "--out", str(out)]) == 0
    record = read_json(out / "export.json")
    assert record["status"] == "ok" and record["accuracy"] >= 0.8
    saved = np.load(out / "inputs.npz")
    assert saved["input_ids"].max() < len(read_json(run_dir / "student" / "vocab_map.json")
                                          ["student_to_teacher"])


@pytest.mark.parametrize("override,message", [
    ("student.width={hidden: 1.5}", "a fraction must be in (0, 1)"),
    ("student.width={hidden: 0}", "would leave nothing"),
    ("student.width={hidden: 48}", "must be a multiple of the head size 32"),
    ("student.width={heads: 3}", "larger than the teacher's 2"),
    ("student.width={hidden: 32, heads: 2}", "do not fit in hidden=32"),
    ("student.vocabulary={budget: 0}", "budget must be >= 1"),
])
def test_impossible_shapes_are_refused_before_any_work(override, message, tmp_path,
                                                       tiny_data_dir, tiny_model_dir, capsys):
    from tests_recipe import write_tiny_recipe

    recipe = write_tiny_recipe(tmp_path, tiny_data_dir, tiny_model_dir)
    out = tmp_path / "run"
    code = main(["distill", str(recipe), "--out", str(out), "--set", override])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()
