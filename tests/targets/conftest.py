"""Fixtures of the target tests: a real sshd on 127.0.0.1 and the device virtualenv."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
SSHD = Path("/usr/sbin/sshd")
DEVICE_PYTHON = REPO / ".venv-device" / "bin" / "python"


def in_ci() -> bool:
    """True under CI (CI=true, as CI services set it; scripts/system-deps.sh reads it the same way)."""
    return os.environ.get("CI", "") not in ("", "0", "false", "False", "FALSE", "no")


def missing(reason: str) -> None:
    """Skip for a missing system program -- but fail under CI, where a skip would pass silently."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set: a skip here would hide it)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def device_python() -> Path:
    """The minimal device virtualenv (numpy, onnxruntime, ai-edge-litert; no torch, no edgekd)."""
    if not DEVICE_PYTHON.exists():
        missing(".venv-device is absent: create it with `bash scripts/device-venv.sh` "
                "(`make test` does)")
    return DEVICE_PYTHON


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sshd:
    """A running sshd with its client-side files: key, known_hosts, and a URL; its sessions'
    $TMPDIR is `remote_tmp`, where the SSH target makes its remote temp folders."""

    def __init__(self, root: Path):
        if not SSHD.exists():
            missing("/usr/sbin/sshd is absent: install openssh-server (scripts/system-deps.sh)")
        if shutil.which("ssh") is None:
            missing("the ssh client is absent: install openssh-client (scripts/system-deps.sh)")
        self.root = root
        self.port = _free_port()
        self.user = os.environ.get("USER") or __import__("getpass").getuser()
        host_key, self.client_key = root / "host_ed25519", root / "client_ed25519"
        for key in (host_key, self.client_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        (root / "authorized_keys").write_text((root / "client_ed25519.pub").read_text())
        self.known_hosts = root / "known_hosts"
        host_pub = (root / "host_ed25519.pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        # The "remote" temp folders (mktemp in $TMPDIR) go to a folder of this server's own, so
        # tests that count them see neither local-target runs nor other test sessions.
        self.remote_tmp = root / "remote-tmp"
        self.remote_tmp.mkdir()
        config = root / "sshd_config"
        config.write_text(f"""\
Port {self.port}
ListenAddress 127.0.0.1
HostKey {host_key}
AuthorizedKeysFile {root / 'authorized_keys'}
PidFile {root / 'sshd.pid'}
StrictModes no
UsePAM no
PermitRootLogin yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
SetEnv TMPDIR={self.remote_tmp}
""")
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege-separation folder sshd insists on
        self.proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)],
                                     stderr=open(root / "sshd.log", "w"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"sshd exited: {(root / 'sshd.log').read_text()}")
                time.sleep(0.1)
        self.url = f"ssh://{self.user}@127.0.0.1:{self.port}"

    def profile(self, folder: Path, name: str = "devbox", python: Path | str = DEVICE_PYTHON,
                **ssh) -> Path:
        """Write a target profile for this sshd; extra `ssh` options override the defaults."""
        import yaml

        options = {"identity_file": str(self.client_key), "known_hosts": str(self.known_hosts),
                   "connect_timeout_s": 5, **ssh}
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"target": self.url, "python": str(python),
                                        "threads": [1, 2], "power": {"watts_per_core": 2.5},
                                        "ssh": options, "notes": "sshd on 127.0.0.1"}))
        return path

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    server = Sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()
