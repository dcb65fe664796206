"""Hostile file names through a real sshd: export folder, artifact, its external-data file and the
device Python all carry shell syntax in their OWN names, so every one of them reaches the remote
command line or the tar stream. A canary file shows whether any shell ran any of it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from edgekd.benchmarks.bench import bench_artifact
from edgekd.targets.profiles import get_target
from edgekd.targets.ssh import SshTarget

FAST = dict(threads=1, batch_size=1, seq_len=None, warmup=1, min_iterations=3, min_time_s=0.0,
            energy="none")


def hostile(canary: str) -> str:
    """Shell syntax that creates `canary` wherever a shell evaluates it: in the shell's folder,
    its parent (a remote temp folder's parent is $TMPDIR) and $HOME; with quotes, spaces, a glob.
    No `/` (not in a file name) and no `..` (ONNX refuses it in an external-data name)."""
    return (f"$(touch {canary}) `touch {canary}` $(cd $(dirname $PWD);touch {canary}) $(cd;touch {canary}) "
            f"'single' \"double\" [x]")


def places(canary: str, *extra: Path) -> list[Path]:
    """Every existing copy of the canary where a shell on either side could have put it (the
    remote temp folders are searched by the test itself, before they are removed)."""
    roots = {Path.home(), Path.cwd(), Path("/tmp"), Path(tempfile.gettempdir()), *extra}
    found = [root / canary for root in roots if (root / canary).exists()]
    found += [p for root in extra for p in root.rglob(canary)]
    return found


def test_the_canary_fires_when_a_shell_sees_the_name(tmp_path, canary):
    """Control: the hostile name does create canaries once a shell evaluates it unquoted."""
    home, work = tmp_path / "home", tmp_path / "work" / "sub"
    home.mkdir()
    work.mkdir(parents=True)
    subprocess.run(["sh", "-c", f"echo {hostile(canary)}"], cwd=work, env={**os.environ, "HOME": str(home)},
                   check=True, capture_output=True)
    assert (work / canary).exists() and (work.parent / canary).exists() and (home / canary).exists()


def hostile_export(onnx_dir: Path, folder: Path, name: str) -> Path:
    """The tiny ONNX export re-saved as `<name>.onnx` with its weights in `<name>.onnx.data`."""
    import onnx

    folder.mkdir(parents=True)
    model = onnx.load(str(onnx_dir / "model.onnx"))
    onnx.save_model(model, str(folder / f"{name}.onnx"), save_as_external_data=True,
                    location=f"{name}.onnx.data", size_threshold=0)
    shutil.copy(onnx_dir / "inputs.npz", folder / "inputs.npz")
    export = json.loads((onnx_dir / "export.json").read_text())
    export.update(artifact=f"{name}.onnx", name=f"student {name}")
    (folder / "export.json").write_text(json.dumps(export))
    return folder


@pytest.fixture
def canary(tmp_path):
    """A fresh canary name; any copy a failed run left behind is removed afterwards."""
    name = f"edgekd-canary-{uuid.uuid4().hex[:8]}"
    yield name
    for path in places(name, tmp_path):
        path.unlink()


def test_hostile_names_are_data_not_commands(sshd, device_python, onnx_dir, tmp_path, monkeypatch,
                                             canary):
    name = f"m {hostile(canary)}"
    export = hostile_export(onnx_dir, tmp_path / f"export {hostile(canary)}", name)
    weights = export / f"{name}.onnx.data"
    assert weights.stat().st_size > (export / f"{name}.onnx").stat().st_size  # the weights live there
    venv = tmp_path / f"venv {hostile(canary)}"
    venv.symlink_to(device_python.parents[1], target_is_directory=True)
    profile = sshd.profile(tmp_path, python=venv / "bin" / "python")
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)

    # The remote temp folder is removed after each run: look into it first.
    remote_dirs, seen_in_remote_dirs, weights_sent, remove_dir = [], [], [], SshTarget._remove_dir

    def look_then_remove(self, folder):
        remote_dirs.append(Path(folder))
        try:
            weights_sent.append(Path(folder, "artifact", weights.name).is_file())
            seen_in_remote_dirs.extend(Path(folder).rglob(canary))
        finally:
            remove_dir(self, folder)

    monkeypatch.setattr(SshTarget, "_remove_dir", look_then_remove)
    for artifact in (export, export / f"{name}.onnx"):  # an export folder, and the file itself
        entry = bench_artifact(artifact, str(profile), **FAST)
        assert entry["status"] == "ok" and entry["runtime"] == "onnxruntime"
        assert entry["name"] == f"student {name}" and entry["latency_ms"]["n"] >= 3
    assert get_target(str(profile)).python_info()["packages"]["onnxruntime"]  # same Python, `check`
    assert weights_sent == [True, True]
    assert [folder.parent for folder in remote_dirs] == [sshd.remote_tmp] * 2  # the sshd's $TMPDIR
    assert seen_in_remote_dirs == [] and not any(folder.exists() for folder in remote_dirs)
    assert places(canary, tmp_path, sshd.remote_tmp) == []


def test_key_files_in_folders_with_spaces_percent_and_quotes(sshd, device_python, tmp_path):
    """ssh splits -o values at spaces and expands % tokens in key paths: both must arrive intact."""
    keys = tmp_path / "keys 100% \"mine\" 'x'"
    keys.mkdir()
    shutil.copy(sshd.client_key, keys / "id ed25519")  # keeps its 0600 mode
    shutil.copy(sshd.known_hosts, keys / "known hosts")
    profile = sshd.profile(tmp_path, python=device_python, identity_file=str(keys / "id ed25519"),
                           known_hosts=str(keys / "known hosts"))
    info = get_target(str(profile)).python_info()
    assert info["packages"]["onnxruntime"] and info["packages"]["torch"] is None

