"""The SSH target against a real sshd on 127.0.0.1, running the runner in the device venv."""

from __future__ import annotations

import glob
import subprocess
import time

import pytest

from edgekd.benchmarks.bench import bench_artifact
from edgekd.cli import main
from edgekd.errors import EdgekdError
from edgekd.targets.profiles import get_target, target_slug

FAST = dict(threads=1, batch_size=1, seq_len=None, warmup=2, min_iterations=5, min_time_s=0.0)


def remote_dirs(sshd) -> set[str]:
    """The SSH target's remote temp folders (the "remote" is this host, its $TMPDIR the sshd's)."""
    return set(glob.glob(f"{sshd.remote_tmp}/edgekd-*"))


def test_onnx_and_tflite_run_in_the_device_venv(sshd, device_python, onnx_dir, tflite_dir, tmp_path):
    profile = sshd.profile(tmp_path, python=device_python)
    before = remote_dirs(sshd)
    for folder, runtime in ((onnx_dir, "onnxruntime"), (tflite_dir, "ai_edge_litert")):
        entry = bench_artifact(folder, str(profile), **FAST, energy="estimate")
        assert entry["status"] == "ok" and entry["target"] == "devbox"
        assert entry["runtime"] == runtime
        assert entry["latency_ms"]["n"] >= 5 and len(entry["samples_ms"]) == entry["latency_ms"]["n"]
        assert entry["python"] != "" and entry["energy_method"].startswith("estimate:")
        assert "2.5 W/core (profile)" in entry["energy_method"]  # the profile's power figure
    assert remote_dirs(sshd) == before  # every remote temp folder was removed


def test_device_venv_is_minimal(device_python):
    code = "import importlib.util as u; print(u.find_spec('torch'), u.find_spec('edgekd'))"
    out = subprocess.run([str(device_python), "-I", "-c", code], capture_output=True, text=True, cwd="/")
    assert out.stdout.split() == ["None", "None"]


def test_targets_check_over_ssh(sshd, device_python, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "edgekd-targets").mkdir()
    sshd.profile(tmp_path / "edgekd-targets", name="board", python=device_python)
    assert main(["targets", "check", "board"]) == 0
    out = capsys.readouterr().out
    assert "reachable" in out and "onnxruntime    1." in out
    assert "torch          -" in out  # the device venv has no torch


def test_unknown_host_key_is_refused(sshd, device_python, onnx_dir, tmp_path):
    """A host missing from known_hosts is refused (no prompt, no trust on first use) in one line."""
    known_hosts = tmp_path / "known_hosts_other"
    other = "[127.0.0.2]:22 " + " ".join(sshd.known_hosts.read_text().split()[1:3]) + "\n"
    known_hosts.write_text(other)  # some other host's key only
    profile = sshd.profile(tmp_path, python=device_python, known_hosts=str(known_hosts))
    before = remote_dirs(sshd)
    with pytest.raises(EdgekdError) as error:
        bench_artifact(onnx_dir, str(profile), **FAST)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"target devbox: cannot reach {sshd.url}: ")
    assert f"host key is not in {known_hosts}" in message
    assert f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> {known_hosts}" in message
    assert known_hosts.read_text() == other and remote_dirs(sshd) == before  # nothing added, nothing run
    with pytest.raises(EdgekdError, match="host key is not in"):  # `targets check` says the same
        get_target(str(profile)).python_info()


def test_changed_host_key_is_refused(sshd, device_python, onnx_dir, tmp_path):
    wrong = tmp_path / "known_hosts_wrong"
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    wrong.write_text(f"[127.0.0.1]:{sshd.port} " + " ".join((tmp_path / "other.pub").read_text().split()[:2]) + "\n")
    profile = sshd.profile(tmp_path, python=device_python, known_hosts=str(wrong))
    with pytest.raises(EdgekdError, match="cannot reach .*host key differs .*REMOTE HOST IDENTIFICATION") as error:
        bench_artifact(onnx_dir, str(profile), **FAST)
    assert "\n" not in str(error.value)
    # ... and accepted when the profile says not to check (a throw-away board)
    profile = sshd.profile(tmp_path, python=device_python, known_hosts=str(wrong), check_host_key=False)
    assert bench_artifact(onnx_dir, str(profile), **FAST, energy="none")["status"] == "ok"


def test_unreachable_host_is_a_clear_error(onnx_dir, tmp_path, sshd):
    from socket import socket

    with socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    target = get_target(f"ssh://nobody@127.0.0.1:{port}")
    assert target_slug(target) == f"ssh-nobody-127.0.0.1-{port}"
    out = tmp_path / "r.json"
    code = main(["bench", str(onnx_dir), "--target", target.name, "--out", str(out)])
    assert code == 2 and not out.exists()


def test_hung_runner_times_out_and_cleans_up(sshd, device_python, onnx_dir, tmp_path):
    profile = sshd.profile(tmp_path, python=device_python)
    before = remote_dirs(sshd)
    with pytest.raises(EdgekdError, match="timed out after 3 s"):
        bench_artifact(onnx_dir, str(profile), threads=1, batch_size=1, seq_len=None, warmup=1,
                       min_iterations=1, min_time_s=60, energy="none", timeout_s=3)
    assert remote_dirs(sshd) == before
    time.sleep(0.5)
    assert runners_in(sshd.remote_tmp) == []


def runners_in(folder) -> list[int]:
    """Pids of runners whose working folder lies in `folder` -- this sshd's remote temp folders,
    so runners of other tests or sessions on the machine do not count."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        cmdline, cwd = proc.info["cmdline"] or [], proc.info["cwd"] or ""
        if "runner.py" in cmdline and cwd.startswith(str(folder)):
            found.append(proc.pid)
    return found


def test_missing_runtime_names_the_package(sshd, device_python, tmp_path, tmp_path_factory,
                                          tiny_model_dir):
    import artifacts  # tests/artifacts.py, put on sys.path by the root conftest

    folder = artifacts.openvino_export(tmp_path_factory, tiny_model_dir)  # no openvino on the device
    with pytest.raises(EdgekdError, match="pip install openvino"):
        bench_artifact(folder, str(sshd.profile(tmp_path, python=device_python)), **FAST)


def test_the_ssh_client_here_accepts_double_dash_before_the_destination(sshd, tmp_path):
    """OpenSSH reads options even after the destination; after `--` it reads none: a word that
    looks like an option (`-V`) is the remote command, run by the remote shell."""
    argv = get_target(str(sshd.profile(tmp_path))).ssh_argv()
    assert argv[-2] == "--"
    remote = subprocess.run(argv + ["-V"], capture_output=True, text=True, timeout=30)
    assert remote.returncode not in (0, 255) and "OpenSSH" not in remote.stdout + remote.stderr
    assert "-V" in remote.stderr  # the remote shell's complaint about the command `-V`
    without = [a for a in argv if a != "--"] + ["-V"]  # the old command line: ssh eats the -V
    local = subprocess.run(without, capture_output=True, text=True, timeout=30)
    assert local.returncode == 0 and "OpenSSH" in local.stderr


@pytest.fixture(scope="module")
def onnx_lm_dir(tmp_path_factory):
    """A tiny causal LM exported to ONNX with its KV cache (export_artifact: verified, with
    prompts in inputs.npz)."""
    from edgekd.exporters import export_artifact
    from edgekd.tasks import causal_lm
    from tiny_lm import save_tiny_lm

    root = tmp_path_factory.mktemp("lm")
    model = save_tiny_lm(root / "student", layers=2)
    out = root / "student-onnx-fp32"
    record = export_artifact(model, "onnx", "fp32", out, role="student", seq_len=64,
                             eval_inputs=None, task=causal_lm)
    assert record["status"] == "ok", record["error"]
    return out


def test_a_causal_lm_generates_in_the_device_venv(sshd, device_python, onnx_lm_dir, tmp_path):
    profile = sshd.profile(tmp_path, python=device_python)
    entry = bench_artifact(onnx_lm_dir, str(profile), threads=1, batch_size=1, seq_len=None,
                           warmup=1, min_iterations=2, min_time_s=0.0, energy="estimate",
                           generate={"prompt_lengths": [4, 8], "new_tokens": 5})
    assert entry["status"] == "ok" and entry["scenario"] == "generate"
    assert entry["runtime"] == "onnxruntime" and entry["environment"]["runtimes"].keys() == {"onnxruntime", "numpy"}
    assert [p["prompt_len"] for p in entry["generation"]["prompts"]] == [4, 8]
    assert entry["latency_ms"]["n"] == 2 * 2 * 4          # TPOT: 2 lengths x 2 generations x 4 steps
    assert entry["metrics"]["greedy_agreement"] == 1.0
