"""Export one model folder to every format x precision, verified, and print the figures.

    .venv/bin/python scripts/export_report.py MODEL_DIR --data DATA_OR_RECIPE [--out DIR]
        [--formats onnx,openvino,tflite] [--precisions fp32,fp16,int8-dynamic,int8-static]
        [--seq-len 128] [--calibration-samples 100] [--test-limit 200]

Prints size, accuracy, top-1 agreement, max |logit diff| and export time per artifact, and the
accuracy change of each artifact against the fp32 PyTorch model. A format whose runtime is not
installed, or an export that fails, is reported in the table rather than stopping the script.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--data", required=True, help="data path or recipe YAML")
    parser.add_argument("--out", default="runs/export-report")
    parser.add_argument("--formats", default=None, help="comma list (default: every format found)")
    parser.add_argument("--precisions", default="fp32,fp16,int8-dynamic,int8-static")
    parser.add_argument("--seq-len", type=int, default=None)
    parser.add_argument("--calibration-samples", type=int, default=100)
    parser.add_argument("--test-limit", type=int, default=200,
                        help="verify on at most this many test examples (CPU time)")
    args = parser.parse_args(argv)

    from edgekd.errors import EdgekdError
    from edgekd.exporters import available_formats, export_artifact, get_exporter
    from edgekd.exporters.command import print_summary, task_inputs
    from edgekd.exporters.verify import ReferenceOutputs
    from edgekd.tasks import get_task

    model_dir = Path(args.model_dir)
    test, labels, calibration, seq_len = task_inputs(model_dir, args.data, args.seq_len,
                                                     args.calibration_samples)
    test = {k: v[:args.test_limit] for k, v in test.items()}
    labels = labels[:args.test_limit]
    started = time.perf_counter()
    task, references = get_task(), ReferenceOutputs()
    torch_accuracy = task.quality(references.get(model_dir, task, test), labels)["accuracy"]
    print(f"PyTorch fp32: accuracy {torch_accuracy:.2%} on {len(labels)} test examples, "
          f"seq_len {seq_len} ({time.perf_counter() - started:.1f} s)")

    records, problems = [], []
    formats = args.formats.split(",") if args.formats else available_formats()
    for fmt in formats:
        reason = get_exporter(fmt).runtime_missing(None)
        if reason:
            problems.append(f"{fmt}: skipped, {reason}")
            continue
        for precision in args.precisions.split(","):
            if precision not in get_exporter(fmt).PRECISIONS:
                continue
            try:
                record = export_artifact(model_dir, fmt, precision,
                                         Path(args.out) / f"{fmt}-{precision}", role=None,
                                         seq_len=seq_len, eval_inputs=test, eval_labels=labels,
                                         calibration=calibration, task=task,
                                         references=references)
            except EdgekdError as exc:
                problems.append(f"{fmt} {precision}: {exc}")
                continue
            records.append(record)
            print(f"  {record['name']}: {record['status']}", flush=True)
    if records:
        print_summary(records, Path(args.out))
        for r in records:
            if r["accuracy"] is not None and torch_accuracy is not None:
                print(f"  {r['name']:28s} accuracy {100 * (r['accuracy'] - torch_accuracy):+.2f} "
                      f"points vs PyTorch; size {r['size_bytes'] / 1e6:.1f} MB")
    for line in problems:
        print(f"  ! {line}")
    return 1 if problems or any(r["status"] != "ok" for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
