"""Bad inputs to `edgekd bench`: refused before the first measurement, no result file written."""

from __future__ import annotations

import json
import shutil

import pytest

LONG_NAME = "x" * 300


@pytest.fixture()
def export_copy(work, onnx_dir):
    """A private copy of a real, verified ONNX export folder."""
    return shutil.copytree(onnx_dir, work / "student-onnx-fp32")


def test_out_is_an_existing_folder_named_json(refuse, work, export_copy):
    (work / "x.json").mkdir()
    refuse(["bench", export_copy, "--out", work / "x.json"], ("x.json", "existing folder"))


def test_out_is_not_json(refuse, work, export_copy):
    refuse(["bench", export_copy, "--out", work / "result.txt"], ".json")


def test_out_inside_a_read_only_folder(refuse, read_only_dir, export_copy):
    refuse(["bench", export_copy, "--out", read_only_dir / "r.json"],
           ("cannot write", str(read_only_dir)))


def test_out_name_too_long(refuse, work, export_copy):
    refuse(["bench", export_copy, "--out", work / (LONG_NAME + ".json")], "too long")


def test_out_below_a_file(refuse, work, export_copy):
    (work / "plain").write_text("a file\n")
    refuse(["bench", export_copy, "--out", work / "plain" / "r.json"], ("plain", "not a folder"))


def test_artifact_missing(refuse, work):
    refuse(["bench", work / "nothing.onnx", "--out", work / "r.json"],
           ("artifact not found", "nothing.onnx"))


def test_folder_that_is_no_artifact(refuse, work):
    (work / "random").mkdir()
    refuse(["bench", work / "random", "--out", work / "r.json"], ("random", "not an artifact"))


def test_unknown_artifact_suffix(refuse, work):
    (work / "model.pt").write_bytes(b"\0" * 16)
    refuse(["bench", work / "model.pt", "--out", work / "r.json"], "model.pt")


def test_empty_artifact_file(refuse, work, export_copy):
    (export_copy / "model.onnx").write_bytes(b"")
    refuse(["bench", export_copy / "model.onnx", "--out", work / "r.json"], ("model.onnx", "empty"))


def test_no_inputs_next_to_the_artifact(refuse, work, export_copy):
    (export_copy / "inputs.npz").unlink()
    refuse(["bench", export_copy, "--out", work / "r.json"], "inputs.npz")


def test_export_json_not_json(refuse, work, export_copy):
    (export_copy / "export.json").write_text("{broken")
    refuse(["bench", export_copy, "--out", work / "r.json"], ("export.json", "not JSON"))


def test_export_json_malformed_field(refuse, work, export_copy):
    record = json.loads((export_copy / "export.json").read_text())
    record["precision"] = 8
    (export_copy / "export.json").write_text(json.dumps(record))
    refuse(["bench", export_copy, "--out", work / "r.json"], ("export.json", "precision"))


def test_failed_export_is_not_benchmarked(refuse, work, export_copy):
    record = json.loads((export_copy / "export.json").read_text())
    record.update(status="failed", error="parity 0.5 < 0.99")
    (export_copy / "export.json").write_text(json.dumps(record))
    refuse(["bench", export_copy, "--out", work / "r.json"], ("export failed", "parity"))


def test_openvino_xml_without_its_bin(refuse, work, openvino_dir):
    folder = shutil.copytree(openvino_dir, work / "ov")
    xml = next(folder.glob("*.xml"))
    xml.with_suffix(".bin").unlink()
    refuse(["bench", xml, "--out", work / "r.json"], (xml.with_suffix(".bin").name, "missing"))


def test_unknown_energy_meter(refuse, work, export_copy):
    refuse(["bench", export_copy, "--energy", "joulemeter", "--out", work / "r.json"],
           ("--energy", "joulemeter"))


def test_unknown_target(refuse, work, export_copy):
    refuse(["bench", export_copy, "--target", "no-such-board", "--out", work / "r.json"],
           ("unknown target", "no-such-board"))


def test_profile_with_unknown_energy_meter(refuse, work, export_copy):
    (work / "board.yaml").write_text("target: local\nenergy: joulemeter\n")
    refuse(["bench", export_copy, "--target", work / "board.yaml", "--out", work / "r.json"],
           ("board.yaml", "joulemeter"))


@pytest.mark.parametrize("option,value", [("--threads", "0"), ("--batch-size", "0"),
                                          ("--min-iterations", "0"), ("--warmup", "-1"),
                                          ("--seq-len", "0"), ("--min-time", "-0.5")])
def test_bad_numbers(refuse, work, export_copy, option, value):
    # the line names the option and the value given, not a list of every rule
    refuse(["bench", export_copy, f"{option}={value}", "--out", work / "r.json"],
           (f"{option} must be >=", f"got {value}"))


def test_batch_size_a_static_artifact_cannot_run(refuse, work, export_copy):
    record = json.loads((export_copy / "export.json").read_text())
    record["batch_size"] = 1
    (export_copy / "export.json").write_text(json.dumps(record))
    refuse(["bench", export_copy, "--batch-size", "4", "--out", work / "r.json"],
           ("batch 1", "batch 4"))


def test_unreachable_target(refuse, work, export_copy):
    refuse(["bench", export_copy, "--target", "ssh://nobody@127.0.0.1:1", "--out", work / "r.json"],
           ("127.0.0.1", "cannot reach"))
