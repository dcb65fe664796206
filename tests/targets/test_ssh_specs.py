"""SSH target specs: only plain user, host and port values get as far as an `ssh` command line,
and the destination always follows `--`."""

from __future__ import annotations

import subprocess

import pytest

import edgekd.targets.ssh as ssh_module
from edgekd.cli import main
from edgekd.errors import EdgekdError
from edgekd.targets.profiles import get_target
from edgekd.targets.ssh import parse_url

CANARY = "edgekd-spec-canary"

MALICIOUS = [
    # (spec, the part the error must name)
    (f"ssh://-oProxyCommand=touch {CANARY}", "host"),
    ("ssh://-oProxyCommand=sh", "host"),
    (f"ssh://root@-oProxyCommand=touch$IFS{CANARY}:22", "host"),
    (f"ssh://-oProxyCommand=touch {CANARY}@127.0.0.1", "user"),
    ("ssh://-l@127.0.0.1", "user"),
    (f"ssh://$(touch {CANARY})@127.0.0.1", "user"),
    (f"ssh://`touch {CANARY}`@127.0.0.1:22", "user"),
    ("ssh://us er@127.0.0.1", "user"),
    ("ssh://user:password@127.0.0.1", "user"),
    (f"ssh://pi@raspberrypi;touch {CANARY}", "host"),
    ("ssh://pi@host name", "host"),
    ("ssh://pi@host\n", "host"),
    ("ssh://pi@'host'", "host"),
    ("ssh://pi@", "host"),
    ("ssh://pi@999.1.1.1", "host"),
    ("ssh://pi@[::1;id]", "host"),
    ("ssh://pi@[fe80::1%$(id)]", "host"),
    ("ssh://pi@[not-an-address]", "host"),
    ("ssh://pi@host:0", "port"),
    ("ssh://pi@host:65536", "port"),
    ("ssh://pi@host:22;id", "port"),
    ("ssh://pi@host:-p1", "port"),
    ("ssh://pi@host:\uff12\uff12", "port"),  # full-width digits: int() would take them
    ("ssh://pi@host:", "port"),
]


@pytest.fixture
def no_ssh(monkeypatch):
    """Record every subprocess the SSH target starts (none may start for a refused spec)."""
    calls = []
    real_run = subprocess.run

    def spy(argv, *args, **kwargs):
        calls.append(argv)
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(ssh_module.subprocess, "run", spy)
    return calls


@pytest.mark.parametrize("spec,part", MALICIOUS)
def test_malicious_specs_are_refused_before_ssh_runs(spec, part, no_ssh, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EdgekdError) as error:
        get_target(spec)
    message = str(error.value)
    assert "\n" not in message and message.startswith("bad SSH target")
    assert f" {part} " in message
    assert no_ssh == [] and not (tmp_path / CANARY).exists()


def test_a_malicious_spec_in_a_profile_is_refused(no_ssh, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "edgekd-targets").mkdir()
    (tmp_path / "edgekd-targets" / "evil.yaml").write_text(
        f'target: "ssh://-oProxyCommand=touch {CANARY}"\npython: python3\n')
    assert main(["targets", "check", "evil"]) == 2
    err = capsys.readouterr().err
    assert "bad SSH target" in err and "is not a plain host name" in err
    assert no_ssh == [] and not (tmp_path / CANARY).exists()


@pytest.mark.parametrize("spec,user,host,port", [
    ("ssh://pi@raspberrypi.local:22", "pi", "raspberrypi.local", 22),
    ("ssh://raspberrypi", None, "raspberrypi", 22),
    ("ssh://ci_user.x-1@board-7.lab.example.com:2222/", "ci_user.x-1", "board-7.lab.example.com", 2222),
    ("ssh://root@10.0.0.17:65535", "root", "10.0.0.17", 65535),
    ("ssh://pi@[::1]:2200", "pi", "::1", 2200),
    ("ssh://pi@[fe80::1%eth0]", "pi", "fe80::1%eth0", 22),
    ("ssh://pi@[::ffff:192.168.1.2]:1", "pi", "::ffff:192.168.1.2", 1),
])
def test_plain_specs_parse_and_the_destination_follows_double_dash(spec, user, host, port):
    assert parse_url(spec) == (user, host, port)
    argv = get_target(spec).ssh_argv()
    assert argv[-2:] == ["--", f"{user}@{host}" if user else host]
    assert argv[argv.index("-p") + 1] == str(port)
    assert argv.count("--") == 1

