"""The command line: fast help with no heavy imports; bad input is one line and exit code 2."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests_recipe import write_tiny_recipe

HEAVY = ("torch", "transformers", "onnxruntime", "openvino", "ai_edge_litert", "tensorflow")


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edgekd", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_help_imports_nothing_heavy():
    code = ("import sys; from edgekd.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert out.stdout.strip().endswith("[]"), out.stdout
    for command in ("run", "distill", "export", "bench", "targets", "report", "compare"):
        assert command in out.stdout


@pytest.mark.parametrize("mutate, message", [
    (lambda text, d, m: text.replace(str(m), str(m) + "-missing"), "teacher model folder not found"),
    (lambda text, d, m: text.replace("layers: [1]", "layers: [0, 7]"), "layer 7 is out of range"),
    (lambda text, d, m: text.replace("epochs: 8\n  learning_rate: 2.0e-3\n  batch_size: 16\nexport",
                                     "epochs: eight\n  learning_rate: 2.0e-3\n  batch_size: 16\nexport"),
     "distill.epochs"),
    (lambda text, d, m: text.replace("name: tiny", "name: tiny\ncolour: blue"), "unknown recipe key 'colour'"),
    (lambda text, d, m: text.replace(str(d), str(d) + "-nowhere"), "data path not found"),
])
def test_bad_input_is_one_line_exit_2_and_no_run_folder(tmp_path, tiny_data_dir, tiny_model_dir, mutate, message):
    recipe = write_tiny_recipe(tmp_path, tiny_data_dir, tiny_model_dir)
    recipe.write_text(mutate(recipe.read_text(), tiny_data_dir, tiny_model_dir))
    out = run_cli("distill", str(recipe), "--out", str(tmp_path / "run"))
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("edgekd")]
    assert len(lines) == 1 and message in lines[0], out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists()


def test_folder_that_is_not_a_model(tmp_path, tiny_data_dir, tiny_model_dir):
    not_a_model = tmp_path / "empty-model"
    not_a_model.mkdir()
    recipe = write_tiny_recipe(tmp_path, tiny_data_dir, not_a_model)
    out = run_cli("distill", str(recipe), "--out", str(tmp_path / "run"))
    assert out.returncode == 2 and "not a Hugging Face model (no config.json)" in out.stderr
    assert not (tmp_path / "run").exists()


def test_set_with_bad_syntax(tmp_path, tiny_data_dir, tiny_model_dir):
    recipe = write_tiny_recipe(tmp_path, tiny_data_dir, tiny_model_dir)
    out = run_cli("distill", str(recipe), "--set", "distill.epochs", "--out", str(tmp_path / "r"))
    assert out.returncode == 2 and "--set expects KEY=VALUE" in out.stderr


def test_an_unknown_option_is_refused_by_its_subcommand(capsys):
    from edgekd.cli import main

    with pytest.raises(SystemExit) as info:
        main(["bench", "model.onnx", "--out", "r.json", "--bogus", "3"])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.startswith("usage: edgekd bench")
    assert "edgekd bench: error: unrecognized arguments: --bogus 3" in err
