"""Causal-LM (generate) entries in the report, the run summary and the regression gate.

The entries are measured for real: tiny random-init Llamas (tests/tiny_lm.py, 2 layers as the
`teacher` folder, 1 as the `student`), each benchmarked generating (two prompt lengths, two
fresh-process repeats) by `bench_artifact`, once per module. Export variants of the
student (an ONNX fp32 and an int4 artifact) are that measurement with its times scaled, so which
one is faster is known without asserting on a speed. The perplexities are those a run's
metrics.json / export.json would hold (no training runs here).
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgekd.cli import main
from edgekd.errors import EdgekdError
from edgekd.report import build as reporting
from edgekd.report.compare import compare_reports
from edgekd.report.generation import decode_rate, perplexity, ttft
from edgekd.report.rows import fmt_ms, fmt_ratio
from edgekd.report.summary import recommended_student, summary_table

GENERATE = {"prompt_lengths": [8, 30], "new_tokens": 8}
SETTING = "local, 1 thread, prompts 8/30 tokens, 8 new tokens"
PPL = {"teacher": 40.0, "student": 44.0}


@pytest.fixture(scope="module")
def lm_entries(tmp_path_factory) -> dict[str, dict]:
    """{"teacher": entry, "student": entry}: the two PyTorch folders measured generating."""
    from tiny_lm import save_tiny_lm

    from edgekd.benchmarks.bench import bench_artifact

    from tiny_lm import lm_tokenizer

    root = tmp_path_factory.mktemp("lm")
    tokenizer = lm_tokenizer()
    teacher = save_tiny_lm(root / "teacher", layers=2, tokenizer=tokenizer)
    student = save_tiny_lm(root / "student", layers=1, seed=1, tokenizer=tokenizer)
    rng = np.random.default_rng(0)
    for folder in (teacher, student):
        np.savez(folder / "inputs.npz", input_ids=rng.integers(1, 200, (3, 40)),
                 attention_mask=np.ones((3, 40), dtype=np.int64))
    (teacher / "metrics.json").write_text(json.dumps({"perplexity": PPL["teacher"],
                                                      "parameters": 120_000}))
    (student / "metrics.json").write_text(json.dumps({
        "perplexity": PPL["student"], "next_token_agreement": 0.6, "greedy_agreement": 0.5,
        "parameters": 60_000}))
    return {role: bench_artifact(folder, "local", threads=1, batch_size=1, seq_len=None,
                                 warmup=1, min_iterations=2, min_time_s=0, energy="none",
                                 repeats=2, generate=GENERATE)
            for role, folder in (("teacher", teacher), ("student", student))}


def scaled(entry: dict, tpot: float = 1.0, ttft_: float = 1.0) -> dict:
    """A copy of `entry` with every TPOT sample times `tpot` and every TTFT sample times
    `ttft_` (top level and each repeat), summaries recomputed."""
    from edgekd.benchmarks.stats import summarize

    out = copy.deepcopy(entry)
    for holder in (out, *out["repeats"]):
        holder["samples_ms"] = [x * tpot for x in holder["samples_ms"]]
        holder["latency_ms"] = summarize(holder["samples_ms"])
        for item in holder["generation"]["prompts"]:
            for key, factor in (("tpot", tpot), ("ttft", ttft_)):
                item[f"{key}_samples_ms"] = [x * factor for x in item[f"{key}_samples_ms"]]
                item[f"{key}_ms"] = summarize(item[f"{key}_samples_ms"])
    out["throughput_per_s"] = entry["throughput_per_s"] / tpot
    return out


def steady(entry: dict) -> dict:
    """The entry as if each repeat had measured exactly the pooled samples: no drift between
    runs, so the gate's verdict on a x1.5 copy does not hang on this shared machine's noise."""
    out = copy.deepcopy(entry)
    for rep in out["repeats"]:
        rep.update(samples_ms=list(out["samples_ms"]), latency_ms=dict(out["latency_ms"]),
                   generation=copy.deepcopy(out["generation"]))
    return out


def variant(entry: dict, name: str, tpot: float) -> dict:
    """An export of the student: the student's measurement renamed, TPOT scaled, no metrics
    (the report fills them from its export.json)."""
    out = scaled(entry, tpot=tpot)
    _, fmt, precision = name.split("-", 2)
    out.update(name=name, format=fmt, precision=precision, metrics=None)
    return out


def make_run(folder: Path, entries: list[dict], exports: dict[str, float] = (),
             recipe: dict | None = None) -> Path:
    """A run folder as the pipeline leaves it before the report stage; `exports` maps an
    export's name to its perplexity (written into its export.json)."""
    (folder / "bench" / "local").mkdir(parents=True)
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe or {"name": "tiny-lm", "task": "causal-lm"}))
    for role, ppl in PPL.items():
        (folder / role).mkdir()
        (folder / role / "metrics.json").write_text(json.dumps({"perplexity": ppl}))
        model = [e["artifact"] for e in entries if e["name"] == f"{role}-pytorch-fp32"]
        if model:  # the role's config.json: the report's GFLOP per token
            shutil.copy(Path(model[0]) / "config.json", folder / role / "config.json")
    for name, ppl in dict(exports).items():
        (folder / "exports" / name).mkdir(parents=True)
        _, fmt, precision = name.split("-", 2)
        (folder / "exports" / name / "export.json").write_text(json.dumps({
            "schema": "edgekd.export/1", "name": name, "role": "student", "format": fmt,
            "precision": precision, "status": "ok", "size_bytes": 50_000,
            "parity": {"token_agreement": 0.9}, "metrics": {"perplexity": ppl,
                                                             "greedy_agreement": 0.9}}))
    for entry in entries:
        (folder / "bench" / "local" / f"{entry['name']}.json").write_text(json.dumps(entry))
    return folder


def lm_run(folder: Path, lm_entries: dict) -> Path:
    """Teacher, PyTorch student, an ONNX fp32 export (perplexity within 5% of the student's,
    half its TPOT) and an int4 one (20% worse perplexity, a quarter of its TPOT)."""
    student = lm_entries["student"]
    return make_run(folder, [lm_entries["teacher"], student,
                             variant(student, "student-onnx-fp32", 0.5),
                             variant(student, "student-onnx-int4", 0.25)],
                    exports={"student-onnx-fp32": PPL["student"] * 1.02,
                             "student-onnx-int4": PPL["student"] * 1.2})


def test_measured_entries_are_generate_entries(lm_entries):
    for role, entry in lm_entries.items():
        assert entry["role"] == role and entry["scenario"] == "generate"
        assert [p["prompt_len"] for p in entry["generation"]["prompts"]] == [8, 30]
        assert len(entry["repeats"]) == 2 and all(r["generation"] for r in entry["repeats"])
        assert entry["metrics"]["perplexity"] == PPL[role]


def test_report_has_the_generation_table_and_the_lm_recommendation(lm_entries, tmp_path):
    run = lm_run(tmp_path / "run", lm_entries)
    report = reporting.build_report(run)
    reporting.write_report(run, report)
    by_name = {e["name"]: e for e in report["entries"]}
    # perplexity and greedy agreement of an artifact come from its export.json
    assert perplexity(by_name["student-onnx-fp32"]) == pytest.approx(44.0 * 1.02)
    assert by_name["student-onnx-int4"]["metrics"]["greedy_agreement"] == 0.9
    # GFLOP of one decode step at the mean context of the timed steps: (8 + 30) / 2 + 8 / 2
    from edgekd.tasks import causal_lm

    config = json.loads((run / "student" / "config.json").read_text())
    fp32 = by_name["student-onnx-fp32"]
    assert fp32["gflop"] == pytest.approx(causal_lm.operations(config, 23, 1))
    assert fp32["gflop_per_s"] == pytest.approx(fp32["gflop"] / (fp32["latency_ms"]["p50"] / 1000))
    assert by_name["teacher-pytorch-fp32"]["gflop"] > fp32["gflop"]        # 2 layers vs 1
    # The fastest student within 5% of the PyTorch student's perplexity: ONNX fp32, not int4.
    (pick,) = report["recommended"]
    assert pick["name"] == "student-onnx-fp32" and pick["within_budget"] and pick["setting"] == SETTING
    assert "within 5% of the PyTorch student's (44.00" in pick["why"]
    assert report["perplexity_budget"] == 0.05

    md = (run / "report.md").read_text()
    assert f"## Generation: {SETTING}" in md and "| artifact | accuracy" not in md
    header = next(line for line in md.splitlines() if line.startswith("| artifact | format"))
    for column in ("TTFT p50 @8", "TTFT p50 @30", "TPOT p50", "TPOT p99", "decode tok/s",
                   "prefill tok/s @30", "peak memory", "energy / token", "perplexity", "greedy agr."):
        assert column in header
    line = next(line for line in md.splitlines() if line.startswith("| student-onnx-fp32 |"))
    assert fmt_ms(fp32["latency_ms"]["p50"]) in line and fmt_ms(ttft(fp32, 30)) in line
    assert "| 44.88 |" in line and "| 90.0% |" in line
    # First screen: the PyTorch teacher against the recommended artifact.
    teacher = by_name["teacher-pytorch-fp32"]
    answer = md.split("## Generation")[0]
    assert "| perplexity | 40.00 | 44.88 |" in answer
    assert f"{fmt_ratio(decode_rate(fp32) / decode_rate(teacher))} faster" in answer
    assert f"{fmt_ratio(ttft(teacher, 8) / ttft(fp32, 8))} faster" in answer
    assert "Perplexity budget" in answer and "Accuracy budget" not in answer
    assert f"{fmt_ratio(teacher['gflop'] / fp32['gflop'])} fewer" in answer

    html = (run / "report.html").read_text()
    assert 'class="generation"' in html and "Time per output token (TPOT)" in html
    assert 'class="answer"' in html and "TTFT p50 @30 tokens" in html

    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(summary_table(report))
    text = console.export_text()
    assert "student-onnx-fp32" in text and "decode tokens/s" in text and "TTFT p50 @30 tokens" in text


def test_perplexity_budget_from_the_recipe_and_without_a_pytorch_student(lm_entries, tmp_path):
    recipe = {"name": "tiny-lm", "task": "causal-lm", "report": {"perplexity_budget": 0.25}}
    run = lm_run(tmp_path / "wide", lm_entries)
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    report = reporting.build_report(run)
    assert recommended_student(report)["name"] == "student-onnx-int4"   # 1.2x is within 1.25x
    # Without the PyTorch student measured, the budget is against the best artifact's perplexity.
    from edgekd.report.recommend import recommend

    report["entries"] = [e for e in report["entries"] if e["name"] != "student-pytorch-fp32"]
    (pick,) = recommend(report, perplexity_budget=0.05)
    assert pick["entry"]["name"] == "student-onnx-fp32" and "best student artifact's" in pick["why"]
    # An export that recorded its source's perplexity on its own texts is judged against that.
    int4 = next(e for e in report["entries"] if e["name"] == "student-onnx-int4")
    int4["metrics"]["source_perplexity"] = perplexity(int4) / 1.04
    (pick,) = recommend(report, perplexity_budget=0.05)
    assert pick["entry"]["name"] == "student-onnx-int4"
    assert "its PyTorch source's on the same texts" in pick["why"]
    from edgekd.report.markdown import render_markdown

    line = next(line for line in render_markdown(report).splitlines()
                if line.startswith("| student-onnx-int4 |"))
    assert "| 52.80 (+4.0%) |" in line


def write_doc(path: Path, entries: list[dict]) -> str:
    path.write_text(json.dumps({"schema": "edgekd.report/1", "run": "lm", "environment": {},
                                "entries": entries}))
    return str(path)


def test_compare_gates_tpot_and_ttft_per_prompt_length(lm_entries, tmp_path, capsys):
    entries = [lm_entries["teacher"], lm_entries["student"]]
    base = write_doc(tmp_path / "base.json", entries)
    assert main(["compare", base, base]) == 0
    out = capsys.readouterr().out
    assert "| measure |" in out and "perplexity (base → cand)" in out and "40.00 → 40.00" in out
    rows = compare_reports(entries, entries)["rows"]
    assert [r["measure"] for r in rows] == ["TPOT", "TTFT @8", "TTFT @30"] * 2
    assert all(r["n_repeats"] == [2, 2] for r in rows)
    # Real (noisy) repeats: TTFT x1.5 shows as +50% on exactly the TTFT rows.
    slow = compare_reports(entries, [scaled(e, ttft_=1.5) for e in entries])["rows"]
    assert [round(r["ratio"], 6) for r in slow] == [1.0, 1.5, 1.5] * 2

    # The verdicts, on repeats without drift: a x1.5 TTFT (TPOT) fails naming TTFT (TPOT).
    flat = [steady(e) for e in entries]
    base = write_doc(tmp_path / "steady.json", flat)
    for factors, measure in (({"ttft_": 1.5}, "TTFT"), ({"tpot": 1.5}, "TPOT")):
        cand = write_doc(tmp_path / "cand.json", [scaled(e, **factors) for e in flat])
        verdicts = tmp_path / "verdicts.json"
        assert main(["compare", base, cand, "--json", str(verdicts)]) == 1
        out = capsys.readouterr().out
        regressed = [line for line in out.splitlines() if line.endswith("| REGRESSED |")]
        assert regressed and all(f"| {measure}" in line for line in regressed), out
        doc = json.loads(verdicts.read_text())
        assert {e["measure"] for e in doc["entries"] if e["verdict"] == "REGRESSED"} == \
            ({"TTFT @8", "TTFT @30"} if measure == "TTFT" else {"TPOT"})
        assert doc["regressed"] == (4 if measure == "TTFT" else 2)
    assert main(["compare", base, base]) == 0


def test_compare_matches_prompt_lengths_and_new_tokens(lm_entries):
    teacher = lm_entries["teacher"]
    other = copy.deepcopy(teacher)
    other["generation"]["new_tokens"] = 16
    with pytest.raises(EdgekdError, match="nothing to compare"):
        compare_reports([teacher], [other])
    result = compare_reports([teacher, lm_entries["student"]], [teacher, other])
    assert [k[0] for k in result["only_candidate"]] == ["teacher-pytorch-fp32"]
    assert result["only_candidate"][0][-2:] == ((8, 30), 16)


def test_ab_pairs_an_lm_on_tpot_and_ttft_per_prompt_length(lm_entries):
    """`edgekd ab`'s verdict from the pairs of real repeats: B is A with TTFT x1.5 in every
    pair, so the paired log-ratios have no scatter and the verdict does not hang on noise."""
    from edgekd.report.ab import ab_result
    from edgekd.report.compare import render_markdown

    a = lm_entries["teacher"]
    b = scaled(a, ttft_=1.5)
    pairs = [(ra["samples_ms"], rb["samples_ms"]) for ra, rb in zip(a["repeats"], b["repeats"])]
    result = ab_result(pairs, [a, b], "p50", 0.05, 0.05)
    assert [r["measure"] for r in result["rows"]] == ["TPOT", "TTFT @8", "TTFT @30"]
    assert [r["verdict"] for r in result["rows"]] == ["unchanged", "REGRESSED", "REGRESSED"]
    assert result["regressed"] == 2 and result["correction"] == "holm over 3 entries"
    assert "| TTFT @30 |" in render_markdown(result)


def classifier_entry(name: str, p50: float, accuracy: float) -> dict:
    """A classifier's entry built the way bench builds one (runner result -> BenchEntry)."""
    from edgekd.benchmarks import stats
    from edgekd.benchmarks.contracts import BenchEntry, RunnerResult

    samples = np.random.default_rng(1).lognormal(np.log(p50), 0.05, 50).tolist()
    role, fmt, precision = name.split("-", 2)
    result = RunnerResult(
        format=fmt, runtime=fmt, runtime_version="1.0", runtime_settings={}, threads=1,
        batch_size=1, seq_len=32, size_bytes=1_000_000, load_time_ms=5.0, first_inference_ms=p50,
        warmup={}, measure={}, latency_ms=stats.summarize(samples), samples_ms=samples,
        throughput_per_s=1000 / p50, peak_memory_mb=50.0, peak_memory_window_mb=50.0,
        energy_j=None, energy_method="none", energy_detail=None,
        cpu={"model": "Test CPU", "cores": 2, "flags": []}, host="box", python="3.11",
        cpu_affinity=None)
    entry = BenchEntry.measured(name=name, role=role, fmt=fmt, precision=precision,
                                target="local", result=result, accuracy=accuracy).to_dict()
    entry["repeats"] = [{"samples_ms": samples, "latency_ms": entry["latency_ms"]}]
    return entry


def test_a_report_mixing_a_classifier_and_lm_entries(lm_entries, tmp_path, capsys):
    from rich.console import Console

    classifier = [classifier_entry("teacher-onnx-fp32", 10.0, 0.9),
                  classifier_entry("student-onnx-int8-dynamic", 3.0, 0.895)]
    run = make_run(tmp_path / "mixed", [*classifier, lm_entries["teacher"], lm_entries["student"]],
                   recipe={"name": "mixed"})
    report = reporting.build_report(run)
    reporting.write_report(run, report)
    md = (run / "report.md").read_text()
    assert "| artifact | accuracy" in md and f"## Generation: {SETTING}" in md
    assert "## local, 1 thread, b1, s32" in md                 # the classifier's own table
    classifier_table = md.split("## local, 1 thread, b1, s32")[1]
    assert "teacher-pytorch-fp32" not in classifier_table.split("##")[0]
    assert {p["name"] for p in report["recommended"]} == {"student-onnx-int8-dynamic",
                                                          "student-pytorch-fp32"}
    Console(record=True, width=200).print(summary_table(report))
    assert "<html" in (run / "report.html").read_text()
    doc = write_doc(tmp_path / "mixed.json", report["entries"])
    assert main(["compare", doc, doc]) == 0
    rows = compare_reports(report["entries"], report["entries"])["rows"]
    assert sorted(r["measure"] for r in rows) == sorted(["latency"] * 2 + ["TPOT", "TTFT @8",
                                                                            "TTFT @30"] * 2)


def test_hardware_comparison_of_lm_runs_is_per_output_token(lm_entries, tmp_path):
    from edgekd.report.hardware import compare_targets, comparison_table

    report = reporting.build_report(lm_run(tmp_path / "a", lm_entries))
    other = copy.deepcopy(report)
    for e in other["entries"]:
        e["target"] = "pi5"
    other["entries"].append(scaled(lm_entries["teacher"], tpot=2.0) | {"target": "pi5"})
    other["entries"][-1]["generation"]["new_tokens"] = 16      # another setting: its own row
    header, rows = comparison_table(compare_targets([report, other]))
    assert header[-1] == "pi5 vs local" and len(rows) == 5
    assert all(row[0].endswith("(TPOT)") for row in rows)
    assert sum(row[-1] == "1.00×" for row in rows) == 4


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed "
                    "(run `make system-deps`)")
def test_lm_html_report_loads_cleanly_in_headless_chromium(lm_entries, tmp_path):
    import re
    import subprocess

    run = lm_run(tmp_path / "run", lm_entries)
    reporting.write_report(run, reporting.build_report(run))
    dom = subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
                          "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                          "--dump-dom", (run / "report.html").resolve().as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout).group(0)
    assert 'data-ready="1"' in body and 'data-errors="0"' in body, body
    # TPOT whiskers, TTFT, decode speed, size and peak memory (no energy was measured)
    assert 'data-plots="5"' in body
    assert dom.stdout.count('<table class="generation">') == 1 and 'class="main"' not in dom.stdout
