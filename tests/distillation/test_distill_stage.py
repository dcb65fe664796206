"""The distillation stage end to end on a tiny model and the generated keyword task."""

import shutil
from argparse import Namespace

import numpy as np
import pytest
import torch

from edgekd.data import load_task_data
from edgekd.files import read_json
from edgekd.pipeline import distill_stage, prepare

OVERRIDES = ["teacher.fine_tune.epochs=8", "teacher.fine_tune.learning_rate=2e-3",
             "distill.epochs=8", "distill.learning_rate=2e-3"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_data_dir, tiny_model_dir):
    """One complete distillation of the tiny teacher, with the teacher's forward passes counted."""
    from tests_recipe import write_tiny_recipe

    recipe = write_tiny_recipe(tmp_path_factory.mktemp("recipe"), tiny_data_dir, tiny_model_dir)
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    args = Namespace(recipe=str(recipe), out=str(run_dir), overrides=OVERRIDES)
    counter = TeacherForwardCounter(teacher_layers=2)
    with counter:
        result = distill_stage(prepare(args))
    return args, run_dir, result, counter


class TeacherForwardCounter:
    """Counts the examples every 2-layer classifier (the teacher; the student has 1) runs on."""

    def __init__(self, teacher_layers):
        self.teacher_layers, self.examples, self.handle = teacher_layers, 0, None

    def hook(self, module, args, kwargs, output):
        if type(module).__name__.endswith("ForSequenceClassification") and \
                module.config.num_hidden_layers == self.teacher_layers:
            self.examples += int(kwargs["input_ids"].shape[0])

    def __enter__(self):
        self.handle = torch.nn.modules.module.register_module_forward_hook(self.hook, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_student_beats_majority_baseline(finished_run, tiny_data_dir):
    _, run_dir, result, _ = finished_run
    data = load_task_data(__import__("edgekd.recipe", fromlist=["x"]).DataConfig(path=str(tiny_data_dir)))
    majority = max(np.bincount([e.label for e in data.test])) / len(data.test)
    assert result.teacher_metrics["accuracy"] >= 0.9
    assert result.student_metrics["accuracy"] >= majority + 0.4, (result.student_metrics, majority)
    for role in ("teacher", "student"):
        folder = run_dir / role
        assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
        assert (folder / "tokenizer.json").is_file() or (folder / "vocab.txt").is_file()
        with np.load(folder / "inputs.npz") as inputs:
            assert inputs["input_ids"].shape[1] == 32 and "labels" in inputs
    metrics = read_json(run_dir / "student" / "metrics.json")
    assert metrics["parameters"] < read_json(run_dir / "teacher" / "metrics.json")["parameters"]
    assert {"accuracy", "macro_f1", "train_time_s", "epoch_time_s"} <= set(metrics)


def test_teacher_runs_once_per_example_with_the_cache(finished_run, tiny_data_dir):
    _, _, result, counter = finished_run
    data = load_task_data(__import__("edgekd.recipe", fromlist=["x"]).DataConfig(path=str(tiny_data_dir)))
    # Teacher stage: 8 epochs of training + 1 test evaluation; distillation: 1 pass over train.
    expected = 8 * len(data.train) + len(data.test) + len(data.train)
    assert counter.examples == expected
    assert result.student_metrics["teacher_forward_examples_in_loop"] == 0


def test_rerun_skips_finished_work(finished_run):
    args, run_dir, _, _ = finished_run
    before = (run_dir / "student" / "model.safetensors").stat().st_mtime_ns
    with TeacherForwardCounter(teacher_layers=2) as counter:
        result = distill_stage(prepare(args))
    assert result.skipped == ["teacher", "student"]
    assert counter.examples == 0
    assert (run_dir / "student" / "model.safetensors").stat().st_mtime_ns == before


def test_redo_student_reuses_cached_teacher_predictions(finished_run, tmp_path):
    args, run_dir, _, _ = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "student")
    args = Namespace(**{**vars(args), "out": str(copy)})
    with TeacherForwardCounter(teacher_layers=2) as counter:
        result = distill_stage(prepare(args))
    assert result.skipped == ["teacher"]
    assert counter.examples == 0          # predictions came from cache/teacher_logits.npz
    assert (copy / "student" / "metrics.json").is_file()


def test_feature_losses_run_the_teacher_live(tmp_path, tiny_data_dir, tiny_model_dir):
    from tests_recipe import write_tiny_recipe

    recipe = write_tiny_recipe(tmp_path, tiny_data_dir, tiny_model_dir)
    args = Namespace(recipe=str(recipe), out=str(tmp_path / "run"),
                     overrides=["teacher.fine_tune=false", "distill.epochs=1", "distill.hidden_loss=1.0",
                                "distill.attention_loss=1.0", "student.from_teacher=null",
                                "student.config={num_hidden_layers: 1, hidden_size: 32, intermediate_size: 64}"])
    result = distill_stage(prepare(args))
    metrics = result.student_metrics
    assert metrics["distill"]["layer_map"] == {"0": 1}
    assert metrics["teacher_forward_examples_in_loop"] > 0
