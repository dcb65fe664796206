"""A recipe file for quick runs on the tiny model and data (used by several test modules)."""

from pathlib import Path


def write_tiny_recipe(folder: Path, data_dir: Path, model_dir: Path, extra: str = "") -> Path:
    path = Path(folder) / "recipe.yaml"
    path.write_text(f"""\
name: tiny
data:
  path: {data_dir}
  max_length: 32
teacher:
  model: {model_dir}
  fine_tune: {{epochs: 8, learning_rate: 2.0e-3, batch_size: 16}}
student:
  from_teacher: {{layers: [1]}}
distill:
  epochs: 8
  learning_rate: 2.0e-3
  batch_size: 16
export:
  formats: [onnx]
  precisions: [fp32, int8-dynamic]
  calibration_samples: 16
bench:
  threads: [1]
  warmup: 2
  min_iterations: 5
  min_time_s: 0
{extra}""")
    return path
