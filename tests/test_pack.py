"""`edgekd pack`: one archive with the bundle, a SHA-256 per file and the artifact's report
entries; a modified unpacked bundle is refused by `edgekd predict`; bad input writes nothing."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
import zipfile

import pytest

from edgekd.benchmarks.contracts import BenchEntry, Report
from edgekd.cli import main

NAME = "student-onnx-fp32"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model_dir):
    """A run folder: one ONNX export bundle and a report.json with entries for it and another."""
    from edgekd.exporters import export_artifact

    run = tmp_path_factory.mktemp("pack") / "tiny-run"
    export_artifact(tiny_model_dir, "onnx", "fp32", run / "exports" / NAME, role="student",
                    seq_len=16, eval_inputs=None)
    entries = [BenchEntry.failed(name=n, role="student", fmt="onnx", precision="fp32",
                                 target=target, error="example entry", threads=1).to_dict()
               for n, target in ((NAME, "local"), (NAME, "pi5"), ("teacher-pytorch-fp32", "local"))]
    (run / "report.json").write_text(json.dumps(Report(entries=entries, run="tiny-run").to_dict()))
    return run


def unpack(archive, where):
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            z.extractall(where)
    else:
        with tarfile.open(archive) as t:
            t.extractall(where, filter="data")
    return where / NAME


@pytest.mark.parametrize("suffix", [".zip", ".tar.gz"])
def test_pack_holds_bundle_manifest_and_report_entries(run_dir, tmp_path, capsys, suffix):
    out = tmp_path / f"bundle{suffix}"
    assert main(["pack", str(run_dir), "--artifact", NAME, "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    folder = unpack(out, tmp_path / "unpacked")
    source = run_dir / "exports" / NAME
    for path in source.iterdir():
        assert (folder / path.name).read_bytes() == path.read_bytes(), path.name
    manifest = json.loads((folder / "manifest.json").read_text())
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert sorted(manifest["files"]) == [f for f in files if f != "manifest.json"]
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    report = json.loads((folder / "report.json").read_text())
    assert [(e["name"], e["target"]) for e in report["entries"]] == [(NAME, "local"), (NAME, "pi5")]
    assert report["run"] == "tiny-run"
    # The unpacked bundle predicts what the run's export folder predicts.
    capsys.readouterr()
    assert main(["predict", str(folder), "goal match", "--json"]) == 0
    unpacked = json.loads(capsys.readouterr().out)["predictions"]
    assert main(["predict", str(source), "goal match", "--json"]) == 0
    assert unpacked == json.loads(capsys.readouterr().out)["predictions"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".edgekd-pack")] == []


@pytest.mark.parametrize("victim", ["model.onnx", "labels.json", "vocab.txt"])
def test_modified_bundle_is_refused_by_predict(run_dir, tmp_path, capsys, victim):
    out = tmp_path / "bundle.zip"
    assert main(["pack", str(run_dir), "--artifact", NAME, "--out", str(out)]) == 0
    folder = unpack(out, tmp_path / "unpacked")
    with open(folder / victim, "ab") as f:
        f.write(b"\n")
    capsys.readouterr()
    assert main(["predict", str(folder), "goal match"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"checksum mismatch for {victim}" in err


def test_missing_file_of_a_bundle_is_refused(run_dir, tmp_path, capsys):
    out = tmp_path / "bundle.tar.gz"
    assert main(["pack", str(run_dir), "--artifact", NAME, "--out", str(out)]) == 0
    folder = unpack(out, tmp_path / "unpacked")
    (folder / "tokenizer.json").unlink()
    capsys.readouterr()
    assert main(["predict", str(folder), "goal match"]) == 2
    assert "tokenizer.json is listed in manifest.json but missing" in capsys.readouterr().err


def _without_report(run_dir, tmp_path):
    copy = tmp_path / "run-without-report"
    shutil.copytree(run_dir, copy)
    (copy / "report.json").unlink()
    return copy


def _with_other_entries(run_dir, tmp_path):
    copy = tmp_path / "run-other-entries"
    shutil.copytree(run_dir, copy)
    report = json.loads((copy / "report.json").read_text())
    report["entries"] = [e for e in report["entries"] if e["name"] != NAME]
    (copy / "report.json").write_text(json.dumps(report))
    return copy


@pytest.mark.parametrize("make_run, artifact, out_name, message", [
    (lambda r, t: r, NAME, "bundle.rar", "use a .zip, .tar.gz or .tgz"),
    (lambda r, t: r, "student-onnx-int8", "bundle.zip", f"has no export student-onnx-int8 (exports: {NAME})"),
    (lambda r, t: t / "no-such-run", NAME, "bundle.zip", "run folder not found"),
    (_without_report, NAME, "bundle.zip", "has no report.json"),
    (_with_other_entries, NAME, "bundle.zip", f"has no entry for {NAME}"),
    (lambda r, t: r, NAME, "missing-folder/bundle.zip", "does not exist"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(run_dir, tmp_path, capsys, make_run,
                                                          artifact, out_name, message):
    run = make_run(run_dir, tmp_path)
    out = tmp_path / out_name
    before = sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()
    assert main(["pack", str(run), "--artifact", artifact, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1 and message in captured.err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == before


def test_failed_pack_leaves_nothing(run_dir, tmp_path, capsys, monkeypatch):
    """An error while the archive is being written (here: the disk fills) is one line, exit 2,
    and leaves no archive and no temporary files."""
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "make_archive", full_disk)
    out = tmp_path / "bundle.zip"
    capsys.readouterr()
    assert main(["pack", str(run_dir), "--artifact", NAME, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {out}" in err and "No space left" in err
    assert list(tmp_path.iterdir()) == []
