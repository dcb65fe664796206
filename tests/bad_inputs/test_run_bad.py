"""Bad inputs to `edgekd run` and `edgekd distill`: all refused in the prepare step, before the
run folder exists (or, when it exists, with it unchanged) and before the teacher is touched."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import yaml

LONG_NAME = "x" * 300

# (--set overrides, words the one error line must contain)
RECIPE_VALUES = {
    "fine-tune batch 0": (["teacher.fine_tune.batch_size=0"], ("teacher.fine_tune", "batch_size")),
    "fine-tune lr -1": (["teacher.fine_tune.learning_rate=-1"], ("teacher.fine_tune", "learning_rate")),
    "fine-tune epochs -1": (["teacher.fine_tune.epochs=-1"], ("teacher.fine_tune", "epochs")),
    "fine-tune batch text": (["teacher.fine_tune.batch_size=big"], "teacher.fine_tune.batch_size"),
    "distill epochs -1": (["distill.epochs=-1"], ("distill", "epochs")),
    "distill batch 0": (["distill.batch_size=0"], ("distill", "batch_size")),
    "distill lr 0": (["distill.learning_rate=0"], ("distill", "learning_rate")),
    "temperature 0": (["distill.temperature=0"], "temperature"),
    "alpha 2": (["distill.alpha=2"], "alpha"),
    "hidden loss -1": (["distill.hidden_loss=-1"], "hidden_loss"),
    "layer map out of range": (["distill.hidden_loss=1", "distill.layer_map={0: 5}"],
                               ("layer_map", "out of range")),
    "layer map not integers": (["distill.hidden_loss=1", "distill.layer_map={a: 1}"],
                               ("layer_map", "integers")),
    "layer map student layer": (["distill.attention_loss=1", "distill.layer_map={3: 0}"],
                                ("layer_map", "3 -> 0")),
    "heads do not divide width": (["student.from_teacher=null",
                                   "student.config={num_attention_heads: 3}"],
                                  ("student.config", "attention heads")),
    "negative width": (["student.from_teacher=null", "student.config={hidden_size: -4}"],
                       ("student.config", "hidden_size")),
    "unknown student field": (["student.from_teacher=null", "student.config={no_such: 1}"],
                              "student.config.no_such"),
    "student layer out of range": (["student.from_teacher.layers=[7]"], ("layer 7", "out of range")),
    "student no layers": (["student.from_teacher.layers=[]"], "at least one teacher layer"),
    "student repeated layer": (["student.from_teacher.layers=[0, 0]"], "distinct"),
    "two kinds of student": (["student.model=some/model"], "exactly one of"),
    "student model folder missing": (["student.from_teacher=null", "student.model=./nowhere"],
                                     ("student", "not found")),
    "unknown target profile": (["bench.targets=[no-such-board]"], ("no-such-board", "unknown target")),
    "unreachable ssh host": (["bench.targets=['ssh://nobody@127.0.0.1:1']"],
                             ("127.0.0.1", "cannot reach")),
    "unknown energy meter": (["bench.energy=joulemeter"], ("bench.energy", "joulemeter")),
    "no targets": (["bench.targets=[]"], "bench.targets"),
    "zero threads": (["bench.threads=[0]"], "bench.threads"),
    "bench batch 0": (["bench.batch_size=0"], "batch_size"),
    "unknown format": (["export.formats=[pdf]"], ("export.formats[0]", "pdf")),
    "unknown precision": (["export.precisions=[int3]"], ("export.precisions[0]", "int3")),
    "calibration 0": (["export.calibration_samples=0"], "calibration_samples"),
    "max length 4": (["data.max_length=4"], "max_length"),
    "longer than positions": (["data.max_length=4096"], ("4096", "positions")),
    "split over 1": (["data.split.test=1.5"], "split"),
    "data missing": (["data.path=/no/such/data"], "/no/such/data"),
    "unknown task": (["task=image-generation"], ("unknown task", "image-generation")),
    "misspelt key": (["distill.temprature=1"], ("distill.temprature", "unknown recipe key")),
    "teacher missing": (["teacher.model=/no/such/teacher"], ("teacher", "not found")),
    "set without value": (["distill"], "KEY=VALUE"),
}


@pytest.mark.parametrize("overrides,expect", RECIPE_VALUES.values(), ids=list(RECIPE_VALUES))
def test_recipe_value_refused_before_the_run_folder(refuse, recipe, work, overrides, expect):
    args = [a for item in overrides for a in ("--set", item)]
    refuse(["run", recipe, "--out", work / "runs" / "tiny", *args], expect)
    assert not (work / "runs").exists()


@pytest.mark.parametrize("command,kind,listed", [("run", "recipe", "bbc-news"),
                                                 ("sweep", "sweep", "bbc-news-sweep")])
def test_unknown_built_in_name_lists_the_built_in_ones(refuse, work, command, kind, listed):
    line = refuse([command, "no-such-thing"], f"no built-in {kind} named 'no-such-thing'")
    assert listed in line


def test_a_recipe_given_to_sweep_says_to_run_it(refuse, recipe):
    refuse(["sweep", recipe], ("is a recipe, not a sweep file", "edgekd run"))


def test_profile_with_unknown_energy_meter(refuse, recipe, work):
    profile = work / "board.yaml"
    profile.write_text("target: local\nenergy: joulemeter\n")
    refuse(["run", recipe, "--set", f"bench.targets=[{profile}]"], ("board.yaml", "joulemeter"))


@pytest.mark.parametrize("command", ["run", "distill"])
def test_out_is_an_existing_file(refuse, recipe, work, command):
    (work / "taken").write_text("not a folder\n")
    refuse([command, recipe, "--out", work / "taken"], ("taken", "not a folder"))


@pytest.mark.parametrize("command", ["run", "distill"])
def test_out_inside_a_read_only_folder(refuse, recipe, read_only_dir, command):
    refuse([command, recipe, "--out", read_only_dir / "run"], ("cannot write", str(read_only_dir)))


def test_out_name_too_long(refuse, recipe, work):
    refuse(["run", recipe, "--out", work / LONG_NAME], "too long")


def test_out_below_a_file(refuse, recipe, work):
    (work / "plain").write_text("a file\n")
    refuse(["run", recipe, "--out", work / "plain" / "run"], ("plain", "not a folder"))


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


@pytest.mark.parametrize("command", ["run", "distill"])
def test_truncated_teacher_weights(refuse, work, tiny_data_dir, teacher_copy, command):
    from tests_recipe import write_tiny_recipe

    _truncate(teacher_copy / "model.safetensors")
    recipe = write_tiny_recipe(work, tiny_data_dir, teacher_copy)
    refuse([command, recipe, "--out", work / "runs" / "t"], ("model.safetensors", "truncated"))
    assert not (work / "runs").exists()


def test_weights_header_is_garbage(refuse, work, tiny_data_dir, teacher_copy):
    from tests_recipe import write_tiny_recipe

    weights = teacher_copy / "model.safetensors"
    weights.write_bytes(struct.pack("<Q", 40) + b"{not json at all, just forty bytes.....}")
    recipe = write_tiny_recipe(work, tiny_data_dir, teacher_copy)
    refuse(["run", recipe, "--out", work / "runs" / "t"], ("model.safetensors", "corrupt"))


def test_pickled_teacher_weights(refuse, work, tiny_data_dir, teacher_copy):
    import torch
    from tests_recipe import write_tiny_recipe
    from safetensors.torch import load_file

    state = load_file(teacher_copy / "model.safetensors")
    (teacher_copy / "model.safetensors").unlink()
    torch.save(state, teacher_copy / "pytorch_model.bin")
    recipe = write_tiny_recipe(work, tiny_data_dir, teacher_copy)
    refuse(["run", recipe, "--out", work / "runs" / "t"], ("pytorch_model.bin", "pickled"))
    assert not (work / "runs").exists()


def test_teacher_folder_without_config(refuse, work, tiny_data_dir, teacher_copy):
    from tests_recipe import write_tiny_recipe

    (teacher_copy / "config.json").unlink()
    recipe = write_tiny_recipe(work, tiny_data_dir, teacher_copy)
    refuse(["run", recipe], ("teacher", "config.json"))


@pytest.mark.parametrize("command", ["run", "distill"])
@pytest.mark.parametrize("saved", ["name: [unclosed\n  - : :", "- a list\n- not a recipe\n"],
                         ids=["bad-yaml", "a-list"])
def test_corrupt_recipe_in_the_existing_run_folder(refuse, recipe, work, command, saved):
    run = work / "runs" / "tiny"
    (run / "teacher").mkdir(parents=True)
    (run / "recipe.yaml").write_text(saved)
    refuse([command, recipe, "--out", run], (str(run / "recipe.yaml"), "delete the folder"))


def test_recipe_file_missing(refuse, work):
    refuse(["run", work / "nope.yaml"], ("recipe file not found", "nope.yaml"))


def test_recipe_not_yaml(refuse, work):
    (work / "bad.yaml").write_text("name: [unclosed\n")
    refuse(["distill", work / "bad.yaml"], ("bad.yaml", "not valid YAML"))


def test_recipe_not_a_mapping(refuse, work):
    (work / "list.yaml").write_text(yaml.safe_dump(["a", "b"]))
    refuse(["run", work / "list.yaml"], "mapping")


def test_teacher_config_that_does_not_fit_the_weights(refuse, work, tiny_data_dir, teacher_copy):
    import json

    from tests_recipe import write_tiny_recipe

    config = json.loads((teacher_copy / "config.json").read_text())
    config["intermediate_size"] = 128  # the weights were saved with 256
    (teacher_copy / "config.json").write_text(json.dumps(config))
    recipe = write_tiny_recipe(work, tiny_data_dir, teacher_copy)
    refuse(["run", recipe, "--out", work / "runs" / "t"], ("teacher", "do not fit its config.json"))
    assert not (work / "runs").exists()
