"""Bad inputs to `edgekd report`, `edgekd compare` and `edgekd targets`: one line, exit 2, and
no report, comparison or run folder rewritten."""

from __future__ import annotations

import json

import pytest


# -- report ---------------------------------------------------------------------------------------

def test_report_run_folder_missing(refuse, work):
    refuse(["report", work / "runs" / "none"], ("run folder not found", "none"))


def test_report_the_same_run_twice(refuse, work, make_run):
    run = make_run(work / "runs" / "laptop")
    refuse(["report", run, str(run) + "/"], ("given twice", "itself"))


def test_report_nothing_to_report(refuse, work):
    (work / "runs" / "empty").mkdir(parents=True)
    refuse(["report", work / "runs" / "empty"], "nothing to report")


def test_report_out_with_one_target_leaves_the_run_reports(refuse, work, make_run):
    run = make_run(work / "runs" / "tiny")
    refuse(["report", run, "--out", work / "cmp"], ("nothing to compare", "local"))
    assert (run / "report.md").read_text() == "the earlier report.md\n"


def test_report_out_is_an_existing_file(refuse, work, make_run):
    make_run(work / "runs" / "a", targets=("local",))
    make_run(work / "runs" / "b", targets=("board",))
    (work / "cmp").write_text("a file\n")
    refuse(["report", work / "runs" / "a", work / "runs" / "b", "--out", work / "cmp"],
           ("cmp", "not a folder"))


def test_report_out_in_a_read_only_folder(refuse, work, read_only_dir, make_run):
    make_run(work / "runs" / "a", targets=("local",))
    make_run(work / "runs" / "b", targets=("board",))
    refuse(["report", work / "runs" / "a", work / "runs" / "b", "--out", read_only_dir / "cmp"],
           ("cannot write", str(read_only_dir)))


def test_report_second_run_broken_leaves_the_first(refuse, work, make_run):
    make_run(work / "runs" / "a")
    refuse(["report", work / "runs" / "a", work / "runs" / "gone"], "run folder not found")


@pytest.mark.parametrize("field,value,expect", [
    ("latency_ms", "fast", "latency_ms"),
    ("samples_ms", ["1.0", "x"], "samples_ms"),
    ("threads", "one", "threads"),
])
def test_report_malformed_bench_entry(refuse, work, make_run, field, value, expect):
    run = make_run(work / "runs" / "tiny")
    path = next((run / "bench" / "local").glob("student-*.json"))
    entry = json.loads(path.read_text())
    entry[field] = value
    path.write_text(json.dumps(entry))
    refuse(["report", run], (path.name, expect))


def test_report_bench_file_not_json(refuse, work, make_run):
    run = make_run(work / "runs" / "tiny")
    (run / "bench" / "local" / "broken.json").write_text("{")
    refuse(["report", run], ("broken.json", "cannot read"))


def test_report_corrupt_recipe(refuse, work, make_run):
    run = make_run(work / "runs" / "tiny")
    (run / "recipe.yaml").write_text("name: [unclosed\n")
    refuse(["report", run], ("recipe.yaml", "not valid YAML"))


# -- compare --------------------------------------------------------------------------------------

@pytest.fixture()
def baseline(work, make_entry, write_report):
    return write_report(work / "base.json", [make_entry("student-onnx-fp32")])


@pytest.mark.parametrize("mutate,expect", [
    (lambda e: e["latency_ms"].update(p50="fast"), "p50"),
    (lambda e: e.update(latency_ms="fast"), "latency_ms"),
    (lambda e: e.update(samples_ms=["1.0", "x"]), "samples_ms"),
    (lambda e: e.update(samples_ms="1,2,3"), "samples_ms"),
    (lambda e: e["latency_ms"].pop("p50"), "p50"),
    (lambda e: e.update(name=None), "name"),
], ids=["p50-string", "latency-string", "samples-strings", "samples-not-list", "no-p50", "no-name"])
def test_compare_malformed_entry(refuse, work, baseline, make_entry, write_report, mutate, expect):
    entry = make_entry("student-onnx-fp32", p50=2.2)
    mutate(entry)
    candidate = write_report(work / "cand.json", [entry])
    refuse(["compare", baseline, candidate], ("cand.json", expect))


def test_compare_file_missing(refuse, work, baseline):
    refuse(["compare", baseline, work / "none.json"], ("cannot read", "none.json"))


def test_compare_not_json(refuse, work, baseline):
    (work / "cand.json").write_text("{")
    refuse(["compare", baseline, work / "cand.json"], ("cannot read", "cand.json", "not JSON"))


def test_compare_wrong_schema(refuse, work, baseline):
    (work / "cand.json").write_text(json.dumps({"schema": "other/1", "entries": []}))
    refuse(["compare", baseline, work / "cand.json"], ("cand.json", "schema"))


def test_compare_unknown_metric(refuse, work, baseline):
    refuse(["compare", baseline, baseline, "--metric", "p42"], "p42")


@pytest.mark.parametrize("threshold", ["abc", "-5%"])
def test_compare_bad_threshold(refuse, work, baseline, threshold):
    refuse(["compare", baseline, baseline, f"--max-slowdown={threshold}"], "--max-slowdown")


@pytest.mark.parametrize("flag", ["--md", "--json"])
@pytest.mark.parametrize("place", ["a-folder", "a-file/out"], ids=["folder", "under-a-file"])
def test_compare_output_that_cannot_be_written_is_refused_before_the_verdict(
        refuse, work, baseline, flag, place):
    # An error after the verdict exited 1, which a CI gate reads as "regressed".
    (work / "a-folder").mkdir()
    (work / "a-file").write_text("x")
    refuse(["compare", baseline, baseline, flag, work / place], (flag, place.split("/")[0]))


# -- targets --------------------------------------------------------------------------------------

def test_targets_check_unknown_profile(refuse, work):
    refuse(["targets", "check", "no-such-board"], ("unknown target", "no-such-board"))


def test_targets_check_unreachable_host(refuse, work):
    refuse(["targets", "check", "ssh://nobody@127.0.0.1:1"], ("127.0.0.1", "cannot reach"))


def test_targets_check_profile_file_missing(refuse, work):
    refuse(["targets", "check", work / "none.yaml"], ("profile file not found", "none.yaml"))


@pytest.mark.parametrize("text,expect", [
    ("target: [unclosed\n", "not valid YAML"),
    ("- a list\n", "mapping"),
    ("target: local\nthreads: [0]\n", "threads"),
    ("target: local\nthreds: [1]\n", "threds"),
    ("target: other-profile\n", "'target' must be local or ssh"),
    ("target: local\npower: {watts_per_core: -1}\n", "watts_per_core"),
    ("target: 'ssh://pi@'\n", "ssh"),
], ids=["bad-yaml", "list", "zero-threads", "unknown-key", "target-is-a-profile",
        "negative-power", "ssh-without-host"])
def test_targets_check_bad_profile(refuse, work, text, expect):
    (work / "board.yaml").write_text(text)
    refuse(["targets", "check", work / "board.yaml"], ("board.yaml", expect) if
           expect != "ssh" else "ssh")


def test_targets_list_with_a_broken_profile_in_the_search_path(refuse, work):
    (work / "edgekd-targets").mkdir()
    (work / "edgekd-targets" / "broken.yaml").write_text("target: [unclosed\n")
    refuse(["targets", "list"], ("broken.yaml", "not valid YAML"))
