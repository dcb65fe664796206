"""The causal-LM distillation stage end to end on tiny random Llama (GQA) and GPT-2 teachers with
a real byte-level BPE tokenizer: teacher runs, cache reuse, resume, metrics, trimmed students."""

import os
import shutil
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekd.files import read_json
from edgekd.pipeline import distill_stage, prepare
from tiny_lm import make_text_data, save_tiny_lm, write_lm_recipe


class ForwardCounter:
    """Counts, per number of layers, the rows of whole sequences (not single generation steps)
    that go through a causal LM, and the training forwards (grad on); `fail_at_training` raises
    KeyboardInterrupt on that training forward, to simulate an interruption."""

    def __init__(self, fail_at_training=None):
        self.rows, self.training_calls, self.fail_at = {}, 0, fail_at_training
        self.handle = None

    def hook(self, module, args, kwargs, output):
        if type(module).__name__ not in ("LlamaForCausalLM", "GPT2LMHeadModel"):
            return
        layers = module.config.num_hidden_layers
        if torch.is_grad_enabled() and module.training:
            self.training_calls += 1
            if self.training_calls == self.fail_at:
                raise KeyboardInterrupt("simulated interruption")
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and ids.shape[1] > 1:
            self.rows[layers] = self.rows.get(layers, 0) + int(ids.shape[0])

    def __enter__(self):
        self.handle = torch.nn.modules.module.register_module_forward_hook(self.hook, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


@pytest.fixture(scope="module")
def lm_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    data = make_text_data(root / "data")
    teacher = save_tiny_lm(root / "llama", "llama", layers=4)
    return root, data, teacher


@pytest.fixture(scope="module")
def finished_run(lm_inputs):
    root, data, teacher = lm_inputs
    recipe = write_lm_recipe(root, data, teacher)
    args = Namespace(recipe=str(recipe), out=str(root / "run"), overrides=[])
    with ForwardCounter() as counter:
        result = distill_stage(prepare(args))
    return args, root / "run", result, counter


def test_teacher_runs_once_per_training_chunk(finished_run):
    _, run_dir, result, counter = finished_run
    index = read_json(run_dir / "cache" / "lm-topk" / "index.json")
    t = result.teacher_metrics
    # every training chunk once (the cache) + the held-out chunks and prompts it is scored on
    assert counter.rows[4] == index["sequences"] + t["eval_chunks"] + t["eval_prompts"]
    assert result.student_metrics["train_chunks"] == index["sequences"] > 0


def test_metrics_present_and_sensible(finished_run):
    _, run_dir, result, _ = finished_run
    t, s = result.teacher_metrics, result.student_metrics
    assert t["perplexity"] > 1 and np.isfinite(t["perplexity"])
    assert s["perplexity"] > 1 and np.isfinite(s["perplexity"])
    assert s["teacher_perplexity_same_chunks"] == pytest.approx(t["perplexity"])
    assert 0 <= s["next_token_agreement"] <= 1 and 0 <= s["greedy_agreement"] <= 1
    assert s["num_hidden_layers"] == 2 and t["num_hidden_layers"] == 4
    assert s["parameters"] < t["parameters"] and s["num_key_value_heads"] == 2
    # the text is learnable: training lowered the loss, and the student predicts it better
    # than the random-init teacher does
    assert s["final_train_loss"] < s["first_train_loss"]
    assert s["perplexity"] < t["perplexity"]
    assert s["steps"] == 2 * -(-s["train_chunks"] // 8)
    for role in ("teacher", "student"):
        assert (run_dir / role / "model.safetensors").is_file() and (run_dir / role / "tokenizer.json").is_file()
    assert not (run_dir / "checkpoints").exists()


def test_rerun_skips_and_redo_student_reuses_the_cache(finished_run, tmp_path):
    args, run_dir, result, _ = finished_run
    with ForwardCounter() as counter:
        again = distill_stage(prepare(args))
    assert again.skipped == ["teacher", "student"] and counter.rows == {}
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "student")
    with ForwardCounter() as counter:
        redo = distill_stage(prepare(Namespace(**{**vars(args), "out": str(copy)})))
    assert 4 not in counter.rows                       # the teacher never ran again
    assert redo.student_metrics["perplexity"] == pytest.approx(result.student_metrics["perplexity"], rel=1e-4)


def test_interrupted_training_resumes_from_the_epoch_checkpoint(lm_inputs, finished_run):
    root, data, teacher = lm_inputs
    (root / "resume").mkdir()
    recipe = write_lm_recipe(root / "resume", data, teacher)
    args = Namespace(recipe=str(recipe), out=str(root / "resume" / "run"), overrides=[])
    steps = finished_run[2].student_metrics["steps"]
    with ForwardCounter(fail_at_training=steps // 2 + 2) as counter, pytest.raises(KeyboardInterrupt):
        distill_stage(prepare(args))
    checkpoints = list((root / "resume" / "run" / "checkpoints" / "student").glob("checkpoint-*"))
    assert [c.name for c in checkpoints] == [f"checkpoint-{steps // 2}"]
    with ForwardCounter() as counter:
        result = distill_stage(prepare(args))
    assert counter.training_calls == steps - steps // 2            # only the second epoch
    assert 4 not in counter.rows                                  # teacher cache reused
    assert result.student_metrics["steps"] == steps
    assert result.student_metrics["perplexity"] == pytest.approx(
        finished_run[2].student_metrics["perplexity"], rel=0.05)


def test_gpt2_student_trimmed_and_pruned_with_jsd(tmp_path):
    data = make_text_data(tmp_path / "data")
    teacher = save_tiny_lm(tmp_path / "gpt2", "gpt2", layers=2)
    recipe = write_lm_recipe(tmp_path, data, teacher,
                             student={"from_teacher": {"layers": [1]}, "width": {"ffn": 64},
                                      "vocabulary": {"trim": True}},
                             distill={"kd": "jsd", "beta": 0.3, "epochs": 1})
    result = distill_stage(prepare(Namespace(recipe=str(recipe), out=str(tmp_path / "run"), overrides=[])))
    s, t = result.student_metrics, result.teacher_metrics
    assert s["vocab_size"] < t["vocab_size"] and s["intermediate_size"] == 64
    assert (tmp_path / "run" / "student" / "vocab_map.json").is_file()
    assert s["distill"]["kd"] == "jsd" and s["eval_chunks"] == t["eval_chunks"] >= 1
    assert np.isfinite(s["perplexity"]) and np.isfinite(s["perplexity_own_tokens"])
    assert 0 <= s["greedy_agreement"] <= 1 and s["eval_prompts"] == t["eval_prompts"]


def test_trimmed_student_scores_text_its_vocabulary_lacks(finished_run, tmp_path):
    """Held-out text with tokens the trimmed vocabulary dropped is still scored, through the
    student's own tokenizer, and the perplexity stays per teacher token."""
    from edgekd.distillation.lm_eval import score_student
    from edgekd.pruning import trim_vocabulary
    from edgekd.tasks.causal_lm import load_reference
    from transformers import AutoTokenizer

    _, run_dir, result, _ = finished_run
    model = load_reference(run_dir / "student")
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "student")
    full = score_student(model, tokenizer, run_dir / "teacher")
    trim = trim_vocabulary(model, tokenizer, ["the cat sat on a mat"])   # drops most tokens
    trimmed = score_student(trim.model, trim.tokenizer, run_dir / "teacher", trim.student_to_teacher)
    assert full["perplexity"] == pytest.approx(result.student_metrics["perplexity"], rel=1e-5)
    assert full["eval_chunks_same_tokens"] == full["eval_chunks"]
    assert trimmed["eval_chunks_same_tokens"] < trimmed["eval_chunks"] == full["eval_chunks"]
    assert np.isfinite(trimmed["perplexity"]) and trimmed["eval_tokens"] == full["eval_tokens"]
    assert 0 <= trimmed["greedy_agreement"] <= 1 and 0 <= trimmed["next_token_agreement"] <= 1
    assert 0 < trimmed["next_token_positions"] < full["next_token_positions"] == full["eval_tokens"]


def test_artifacts_are_scored_on_the_students_chunks_and_basis(finished_run):
    """Export scores an artifact's perplexity on `reference_chunks` through a Generator: for the
    PyTorch student, full or vocabulary-trimmed, that is exactly score_student's number (same
    texts, per teacher token), so the first screen compares artifact, student and teacher alike."""
    from edgekd.benchmarks import runtimes
    from edgekd.benchmarks.runtime_pytorch import Generator
    from edgekd.distillation.lm_eval import reference_chunks, score_student
    from edgekd.pruning import trim_vocabulary
    from edgekd.tasks.causal_lm import load_reference, quality
    from transformers import AutoTokenizer

    _, run_dir, _, _ = finished_run
    model = load_reference(run_dir / "student")
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "student")
    trim = trim_vocabulary(model, tokenizer, ["the cat sat on a mat"])
    for m, tok, mapping in ((model, tokenizer, None), (trim.model, trim.tokenizer, trim.student_to_teacher)):
        chunks = reference_chunks(run_dir / "teacher", tok, mapping)
        generator = Generator.from_model(m)
        got = quality([runtimes.sequence_logits(generator, ids) for ids in chunks], chunks)
        expected = score_student(m, tok, run_dir / "teacher", mapping)
        assert got["perplexity"] == pytest.approx(expected["perplexity"], rel=1e-4)
        assert got["tokens"] == expected["eval_tokens"]
        assert got["perplexity_own_tokens"] == pytest.approx(expected["perplexity_own_tokens"], rel=1e-4)
    assert got["own_tokens"] > got["tokens"]     # the trimmed vocabulary reads the text in more tokens


def test_two_cpu_processes_match_one(tmp_path):
    """`torchrun --nproc_per_node 2` (gloo on CPU) gives the student one process gives: all
    training chunks fit in one global batch (4 = 2 processes x 2), so each step sees the same
    examples; the chunks differ in length, so this also checks the loss is weighted per token
    across processes (not a mean of per-process means)."""
    from safetensors.numpy import load_file

    data = make_text_data(tmp_path / "data")
    teacher = save_tiny_lm(tmp_path / "llama", "llama", layers=4)
    recipe = write_lm_recipe(tmp_path, data, teacher, data={"max_train_chunks": 4},
                             distill={"epochs": 3, "batch_size": 4})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    one = subprocess.run([sys.executable, "-m", "edgekd", "distill", str(recipe), "--out",
                          str(tmp_path / "one")], env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          str(29500 + os.getpid() % 1000), "-m", "edgekd", "distill", str(recipe),
                          "--out", str(tmp_path / "two"), "--set", "distill.batch_size=2"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    m1 = read_json(tmp_path / "one" / "student" / "metrics.json")
    m2 = read_json(tmp_path / "two" / "student" / "metrics.json")
    assert (m1["processes"], m2["processes"]) == (1, 2) and m1["steps"] == m2["steps"] == 3
    w1 = load_file(tmp_path / "one" / "student" / "model.safetensors")
    w2 = load_file(tmp_path / "two" / "student" / "model.safetensors")
    start = load_file(teacher / "model.safetensors")   # student layer 0 is teacher layer 0
    moved = max(float(np.abs(w1[k] - start[k]).max()) for k in w1 if "layers.0." in k)
    diff = max(float(np.abs(w1[k] - w2[k]).max()) for k in w1)
    assert moved > 1e-3                        # training changed the weights...
    assert diff < 1e-3 * moved                 # ...and both runs changed them the same way
    assert m2["perplexity"] == pytest.approx(m1["perplexity"], rel=0.02)


def test_edgekd_run_refuses_prompts_longer_than_every_held_out_text(finished_run, capsys):
    from edgekd.cli import main

    args, run_dir, _, _ = finished_run      # the default prompt lengths 64 / 256: texts are shorter
    assert main(["run", args.recipe, "--out", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bench.prompt_lengths" in err[0] and "256 tokens" in err[0], err
    assert not (run_dir / "exports").exists() and not (run_dir / "report.json").exists()
