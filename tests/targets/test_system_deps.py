"""scripts/system-deps.sh: a system package that stays missing fails CI in one line, and locally
says loudly which tests will skip. apt-get and sudo are replaced by scripts on PATH that log
their calls, so the real package manager never runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "scripts" / "system-deps.sh"


@pytest.fixture
def machine(tmp_path):
    """Run the script on a pretend machine: fake apt-get/sudo, program paths under control."""
    bin_dir, log = tmp_path / "bin", tmp_path / "apt.log"
    bin_dir.mkdir()
    # apt-get logs its arguments; `install` "installs" whatever $FAKE_INSTALLS lists, or fails.
    (bin_dir / "apt-get").write_text(f"""#!/bin/sh
echo "$*" >> {log}
case "$*" in *install*)
  [ -n "$FAKE_INSTALLS" ] || {{ echo "E: Unable to locate package chromium" >&2; exit 100; }}
  for f in $FAKE_INSTALLS; do printf '#!/bin/sh\\n' > "$f"; chmod +x "$f"; done;;
esac
""")
    (bin_dir / "sudo").write_text('#!/bin/sh\n[ "$1" = -n ] && shift\nexec "$@"\n')
    for tool in ("apt-get", "sudo"):
        (bin_dir / tool).chmod(0o755)
    present = sys.executable  # an executable that exists: a program "installed"

    def run(ci: str | None = None, **programs) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != "CI"}
        env.update(PATH=f"{bin_dir}:{env['PATH']}", EDGEKD_SSHD=present, EDGEKD_SSH="sh",
                   EDGEKD_CHROMIUM=present, FAKE_INSTALLS="")
        env.update({k: str(v) for k, v in programs.items()})
        if ci is not None:
            env["CI"] = ci
        return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)

    run.apt_calls = lambda: log.read_text().splitlines() if log.exists() else []
    return run


def test_nothing_missing_is_silent_and_installs_nothing(machine):
    proc = machine(ci="true")
    assert proc.returncode == 0 and proc.stdout == proc.stderr == ""
    assert machine.apt_calls() == []


@pytest.mark.parametrize("programs,package,skipped", [
    ({"EDGEKD_SSHD": "/nonexistent/sshd"}, "openssh-server", "SSH target tests"),
    ({"EDGEKD_SSH": "no-such-ssh-client"}, "openssh-client", "SSH target tests"),
    ({"EDGEKD_CHROMIUM": "/nonexistent/chromium"}, "chromium", "HTML report test"),
])
def test_a_missing_package_fails_ci_in_one_line(machine, programs, package, skipped):
    proc = machine(ci="true", **programs)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("system-deps: ERROR: ")
    assert f"{package} missing in CI" in lines[0] and skipped in lines[0]
    assert "E: Unable to locate package" in lines[0]  # apt's own reason
    assert any(package in call and "install" in call for call in machine.apt_calls())


@pytest.mark.parametrize("ci", [None, "", "false", "0"])
def test_locally_a_missing_package_is_a_loud_warning_not_a_failure(machine, ci):
    proc = machine(ci=ci, EDGEKD_SSHD="/nonexistent/sshd", EDGEKD_CHROMIUM="/nonexistent/chromium")
    assert proc.returncode == 0
    assert "WARNING: openssh-server chromium missing" in proc.stderr
    assert "will SKIP: the SSH target tests" in proc.stderr and "HTML report test" in proc.stderr
    assert "apt-get install openssh-server chromium" in proc.stderr


def test_a_package_that_installs_passes_ci(machine, tmp_path):
    sshd = tmp_path / "sbin" / "sshd"
    sshd.parent.mkdir()
    proc = machine(ci="true", EDGEKD_SSHD=sshd, FAKE_INSTALLS=sshd)
    assert proc.returncode == 0 and proc.stderr == ""
    assert "installed openssh-server" in proc.stdout and os.access(sshd, os.X_OK)


def test_installed_but_still_not_found_fails_ci(machine, tmp_path):
    """apt-get succeeds yet the program is not where the tests look: still a CI failure."""
    proc = machine(ci="true", EDGEKD_SSHD="/nonexistent/sshd", FAKE_INSTALLS=tmp_path / "elsewhere")
    assert proc.returncode == 1
    assert "openssh-server missing in CI" in proc.stderr and "still not where the tests look" in proc.stderr
