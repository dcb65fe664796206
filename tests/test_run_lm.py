"""`edgekd run` on a causal-LM recipe: distil, export with a KV cache, verify by generating,
benchmark generation (TTFT / TPOT), report teacher against the recommended student, resume."""

from __future__ import annotations

import json

import pytest

from edgekd.cli import main
from edgekd.report.compare import compare_reports
from tiny_lm import make_text_data, save_tiny_lm, write_lm_recipe

BENCH = {"threads": [1], "prompt_lengths": [8, 16], "new_tokens": 4, "repeats": 2,
         "min_time_s": 0, "min_iterations": 2, "warmup": 1, "energy": "estimate"}


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm-run")
    data = make_text_data(root / "data", texts=60)
    teacher = save_tiny_lm(root / "teacher", layers=4)
    recipe = write_lm_recipe(root, data, teacher, bench=BENCH,
                             export={"formats": ["onnx"], "precisions": ["fp32", "int8-dynamic"]})
    out = root / "run"
    code = main(["run", str(recipe), "--out", str(out)])
    return recipe, out, code


@pytest.mark.slow
def test_a_causal_lm_goes_the_whole_path(lm_run, capsys):
    recipe, out, code = lm_run
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    names = {e["name"] for e in report["entries"]}
    assert names == {"teacher-pytorch-fp32", "student-pytorch-fp32", "student-onnx-fp32",
                     "student-onnx-int8-dynamic"}
    for entry in report["entries"]:
        assert entry["status"] == "ok" and entry["scenario"] == "generate"
        assert [p["prompt_len"] for p in entry["generation"]["prompts"]] == [8, 16]
        assert len(entry["repeats"]) == 2 and entry["metrics"]["perplexity"] > 1
    export = json.loads((out / "exports" / "student-onnx-fp32" / "export.json").read_text())
    assert export["parity"]["token_agreement"] == 1.0 and export["settings"]["kv_cache"]
    assert export["metrics"]["perplexity"] == pytest.approx(export["metrics"]["source_perplexity"], rel=1e-3)
    # scored on the chunks and token basis distillation scored the student on
    student = json.loads((out / "student" / "metrics.json").read_text())
    assert export["metrics"]["source_perplexity"] == pytest.approx(student["perplexity"], rel=1e-4)
    recommended = report["recommended"][0]
    assert recommended["name"].startswith("student-onnx")
    bench_files = sorted(p.name for p in (out / "bench" / "local").glob("*.json"))
    assert "student-onnx-fp32-t1-p8_16-n4.json" in bench_files
    assert "TPOT" in (out / "report.md").read_text()
    # the report against itself passes the gate, TPOT and TTFT rows included
    verdict = compare_reports(report["entries"], report["entries"], threshold=0.05)
    assert verdict["regressed"] == 0 and len(verdict["rows"]) == 4 * 3
    # a rerun resumes: nothing is distilled, exported or measured again
    stamps = {p: p.stat().st_mtime_ns for p in (out / "bench" / "local").glob("*.json")}
    capsys.readouterr()
    assert main(["run", str(recipe), "--out", str(out)]) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
