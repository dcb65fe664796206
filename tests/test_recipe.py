"""The recipe: typed, validated, overridable; errors name the key."""

import re

import pytest

from edgekd.errors import EdgekdError
from edgekd.recipe import builtin_recipe_path, load_recipe, save_recipe

MINIMAL = """\
name: t
data: {path: data}
teacher: {model: m}
student: {from_teacher: {layers: [0]}}
"""


def write(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_builtin_default_loads_with_its_sections():
    recipe = load_recipe(builtin_recipe_path())
    assert recipe.name == "bbc-news"
    assert recipe.student.from_teacher.layers == [0, 5]
    assert recipe.export.formats == ["onnx", "openvino", "tflite"]
    assert recipe.bench.threads == [1]


def test_defaults_fill_missing_sections(tmp_path):
    recipe = load_recipe(write(tmp_path, MINIMAL))
    assert recipe.distill.temperature == 4.0 and recipe.distill.alpha == 0.7
    assert recipe.data.split.test == 0.2
    assert recipe.teacher.fine_tune is None
    assert recipe.seq_len == 128


def test_set_overrides_parse_yaml_values(tmp_path):
    recipe = load_recipe(write(tmp_path, MINIMAL), ["distill.epochs=1", "bench.threads=[1, 2]",
                                                    "teacher.fine_tune.epochs=3", "data.unlabeled=extra.txt"])
    assert recipe.distill.epochs == 1.0
    assert recipe.bench.threads == [1, 2]
    assert recipe.teacher.fine_tune.epochs == 3
    assert recipe.data.unlabeled == "extra.txt"
    # one value where a list is expected is that list of one
    recipe = load_recipe(write(tmp_path, MINIMAL), ["bench.threads=2", "export.formats=onnx"])
    assert recipe.bench.threads == [2] and recipe.export.formats == ["onnx"]


@pytest.mark.parametrize("override, message", [
    ("distill.temprature=2", "unknown recipe key 'distill.temprature'"),
    ("distill.epochs=many", "recipe key 'distill.epochs' must be float"),
    ("bench.threads=[one]", "bench.threads[0]"),
    ("bench.threads=one", "bench.threads[0]"),
    ("bench.threads={a: 1}", "recipe key 'bench.threads' must be a list, got dict"),
    ("export.formats=[onnx, coreml]", "export.formats[1]"),
    ("distill.alpha=1.5", "alpha must be in [0, 1]"),
    ("student.config={num_hidden_layers: 2}", "exactly one of student.from_teacher"),
    ("data=3", "recipe key 'data' must be a mapping"),
    ("export.int4_group_size=48", "export.int4_group_size must be a power of two >= 8"),
    ("export.int4_group_size=0", "export.int4_group_size must be a power of two >= 8"),
    ("export.int4_ratio=0", "export.int4_ratio must be a fraction in (0, 1]"),
    ("export.int4_ratio=1.5", "export.int4_ratio must be a fraction in (0, 1]"),
    ("export.int4_data_aware=yes please", "export.int4_data_aware"),
])
def test_bad_keys_and_types_name_the_key(tmp_path, override, message):
    with pytest.raises(EdgekdError) as info:
        load_recipe(write(tmp_path, MINIMAL), [override])
    assert message in str(info.value)


def test_int4_group_size_is_an_option_of_int4_only(tmp_path):
    assert load_recipe(write(tmp_path, MINIMAL)).export.options("int4") == {}
    for group in (-1, 8, 64):
        export = load_recipe(write(tmp_path, MINIMAL), [f"export.int4_group_size={group}"]).export
        assert export.options("int4") == {"int4_group_size": group}
        assert export.options("int8-dynamic") == {}
    export = load_recipe(write(tmp_path, MINIMAL), ["export.int4_ratio=0.5",
                                                    "export.int4_data_aware=true"]).export
    assert export.options("int4") == {"int4_ratio": 0.5, "int4_data_aware": True}
    assert export.options("fp32") == {}


def test_format_precisions_replace_the_shared_list_for_their_format(tmp_path):
    from edgekd.tasks import get_task

    export = load_recipe(write(tmp_path, MINIMAL), [
        "export.precisions=[fp32, int8-dynamic]",
        "export.format_precisions={tflite: [int8-dynamic], openvino: [bf16]}"]).export
    assert export.jobs() == [("onnx", "fp32"), ("onnx", "int8-dynamic"), ("openvino", "bf16"),
                             ("tflite", "int8-dynamic")]
    lm = load_recipe(write(tmp_path, MINIMAL + "task: causal-lm\n"), [
        "export.precisions=[int4]", "export.format_precisions={tflite: [int8-dynamic]}"]).export
    assert lm.jobs(get_task("causal-lm")) == [("onnx", "int4"), ("openvino", "int4"),
                                              ("tflite", "int8-dynamic")]
    for override, message in [
            ("export.format_precisions={coreml: [fp32]}", "'coreml' is not one of export.formats"),
            ("export.format_precisions={tflite: [bf16]}", "format_precisions.tflite[0]: tflite does not export 'bf16'")]:
        with pytest.raises(EdgekdError, match=re.escape(message)):
            load_recipe(write(tmp_path, MINIMAL), [override])


def test_missing_required_key_and_bad_yaml(tmp_path):
    with pytest.raises(EdgekdError, match="'teacher' is required"):
        load_recipe(write(tmp_path, "name: t\ndata: {path: x}\nstudent: {model: m}\n"))
    with pytest.raises(EdgekdError, match="not valid YAML"):
        load_recipe(write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(EdgekdError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_saved_recipe_round_trips(tmp_path):
    recipe = load_recipe(write(tmp_path, MINIMAL), ["distill.seed=7"])
    save_recipe(recipe, tmp_path / "out" / "recipe.yaml")
    assert load_recipe(tmp_path / "out" / "recipe.yaml") == recipe
