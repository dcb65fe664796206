"""`edgekd pack`: one export bundle of a run as one file to copy to a device or attach to a release.

The archive holds one folder, named after the artifact, with the bundle (artifact, tokenizer,
config, labels, model card, export.json, inputs.npz), `report.json` (the run's report with only
this artifact's entries, the shape `edgekd compare` reads) and `manifest.json` (a SHA-256 per
file). `edgekd predict` on the unpacked folder checks the manifest first. The archive is written
to a temporary name and renamed, so a failed pack leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from edgekd.errors import EdgekdError

REPORT_FILE = "report.json"
SUFFIXES = (".zip", ".tar.gz", ".tgz")


def archive_kind(out: Path) -> str:
    """"zip" or "gztar" from the output name, else EdgekdError."""
    name = out.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar.gz", ".tgz")):
        return "gztar"
    raise EdgekdError(f"--out {out}: use a .zip, .tar.gz or .tgz file name")


def report_of(run_dir: Path, name: str) -> dict:
    """The run's report.json reduced to the entries of artifact `name`."""
    from edgekd.benchmarks.contracts import ContractError, Report

    path = run_dir / REPORT_FILE
    if not path.is_file():
        raise EdgekdError(f"{run_dir} has no {REPORT_FILE}: finish the run (edgekd run) or "
                          f"rebuild it (edgekd report {run_dir}) before packing")
    try:
        report = Report.from_dict(json.loads(path.read_text(encoding="utf-8")), str(path)).to_dict()
    except (OSError, ValueError, ContractError) as exc:
        raise EdgekdError(f"{path} is unreadable: {exc}") from None
    entries = [e for e in report["entries"] if e.get("name") == name]
    if not entries:
        raise EdgekdError(f"{path} has no entry for {name}: benchmark it (edgekd run, or edgekd "
                          f"report {run_dir} after edgekd bench) before packing")
    return {**report, "entries": entries}


def pack(run_dir: str | Path, name: str, out: str | Path) -> Path:
    """Pack the bundle `run_dir/exports/<name>/` with its report entries and a manifest into the
    archive `out` (.zip or .tar.gz), atomically; returns the archive's path."""
    from edgekd.exporters.bundle import MANIFEST_FILE, manifest, open_bundle
    from edgekd.files import write_json_atomic

    run_dir, out = Path(run_dir), Path(out)
    kind = archive_kind(out)
    if not run_dir.is_dir():
        raise EdgekdError(f"run folder not found: {run_dir}")
    folder = run_dir / "exports" / name
    if not folder.is_dir():
        known = sorted(p.name for p in (run_dir / "exports").glob("*") if p.is_dir())
        raise EdgekdError(f"{run_dir} has no export {name} (exports: {', '.join(known) or 'none'})")
    open_bundle(folder)  # an ok export with its tokenizer, else one line
    report = report_of(run_dir, name)
    if not out.parent.is_dir():
        raise EdgekdError(f"--out {out}: folder {out.parent} does not exist")

    try:
        with tempfile.TemporaryDirectory(prefix=".edgekd-pack-", dir=out.parent) as tmp:
            staged = Path(tmp) / name
            shutil.copytree(folder, staged, ignore=shutil.ignore_patterns(MANIFEST_FILE))
            write_json_atomic(staged / REPORT_FILE, report)
            write_json_atomic(staged / MANIFEST_FILE, manifest(staged))
            archive = Path(shutil.make_archive(str(Path(tmp) / "archive"), kind, root_dir=tmp,
                                               base_dir=name))
            os.replace(archive, out)  # same file system: the archive appears whole or not at all
    except OSError as exc:  # a full disk, a read-only folder: nothing was left behind
        raise EdgekdError(f"cannot write {out}: {exc}") from None
    return out


def pack_command(args) -> int:
    """Handler of `edgekd pack`."""
    out = pack(args.run_dir, args.artifact, args.out)
    print(f"packed {args.artifact} into {out} ({out.stat().st_size} bytes)")
    return 0
