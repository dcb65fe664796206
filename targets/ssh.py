"""The `ssh://user@host:port` target: run the runner on another machine over OpenSSH.

One run: make a fresh remote temp folder (`mktemp -d`), stream the runner, the artifact and its
inputs into it as a tar archive over the same SSH channel, start the runner with the target's
Python (a device virtualenv, say), read its JSON from stdout, and remove the folder -- also after
a failure or a time-out. Host keys are checked against known_hosts unless the profile says
`ssh: {check_host_key: false}`; BatchMode means a missing key fails instead of prompting. Every
remote path and argument is quoted with `shlex.quote`.

User, host and port must be plain (allow-lists below) and are checked when the spec is parsed,
before any `ssh` runs; the destination always follows `--`, so nothing in it can reach `ssh` as an
option (`ssh://-oProxyCommand=...`). Files go over the SSH channel as a tar stream, so there is
no scp/sftp command line to harden.
"""

from __future__ import annotations

import io
import ipaddress
import json
import re
import shlex
import subprocess
import tarfile
from pathlib import Path

from edgekd.errors import EdgekdError
from edgekd.targets.base import CHECK_SCRIPT, Target, parse_runner_output, runner_argv, runner_files
from edgekd.targets.profiles import SshOptions

# The URL's shape only; each part is then checked against its own allow-list.
URL = re.compile(r"ssh://(?:(?P<user>[^@/]*)@)?(?P<host>\[[^\]]*\]|[^@/:]*)(?::(?P<port>[^/]*))?/?")
USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
HOSTNAME = re.compile(rf"{HOST_LABEL}(?:\.{HOST_LABEL})*")
IPV6 = re.compile(r"\[(?P<address>[0-9A-Fa-f:.]+)(?P<scope>%[A-Za-z0-9_.-]+)?\]")
PORT = re.compile(r"[0-9]{1,5}")


def _plain_host(host: str) -> str | None:
    """The host as ssh gets it (brackets dropped), or None when it is not a plain host name,
    IPv4 address or bracketed IPv6 address."""
    ipv6 = IPV6.fullmatch(host)
    if ipv6:
        try:
            ipaddress.IPv6Address(ipv6["address"])
        except ValueError:
            return None
        return ipv6["address"] + (ipv6["scope"] or "")
    if len(host) > 253 or not HOSTNAME.fullmatch(host):
        return None
    if all(label.isdigit() for label in host.split(".")):  # dotted digits: an IPv4 address
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return None
    return host


def parse_url(url: str) -> tuple[str | None, str, int]:
    """(user or None, host, port) of `ssh://user@host:port`; an EdgekdError names the first part
    that is not plain (user names, host names, IPv4, [IPv6], port 1..65535)."""
    match = URL.fullmatch(url)
    if not match:
        raise EdgekdError(f"bad SSH target {url!r}: expected ssh://user@host:port")
    user, host, port = match["user"], match["host"], match["port"]
    if user is not None and not USER.fullmatch(user):
        raise EdgekdError(f"bad SSH target {url!r}: user {user!r} is not a plain user name "
                          "(letters, digits, . _ -; not starting with -)")
    plain_host = _plain_host(host)
    if plain_host is None:
        raise EdgekdError(f"bad SSH target {url!r}: host {host!r} is not a plain host name, "
                          "IPv4 address or [IPv6] address")
    if port is not None and not (PORT.fullmatch(port) and 1 <= int(port) <= 65535):
        raise EdgekdError(f"bad SSH target {url!r}: port {port!r} is not a number from 1 to 65535")
    return user, plain_host, int(port) if port is not None else 22


def artifact_files(artifact: Path) -> list[tuple[Path, str]]:
    """(local path, name in the archive) of everything the artifact needs: an IR's .bin, an ONNX
    file's external-data files, or a whole model folder."""
    artifact = Path(artifact)
    if artifact.is_dir():
        return [(p, f"artifact/{artifact.name}/{p.relative_to(artifact)}")
                for p in sorted(artifact.rglob("*")) if p.is_file()]
    # Prefix match by hand, not glob(): `[`, `*` or `?` in the artifact's name are not patterns.
    extra = [artifact.with_suffix(".bin")] if artifact.suffix == ".xml" else \
        sorted(p for p in artifact.parent.iterdir() if p.name.startswith(artifact.name) and p != artifact)
    return [(p, f"artifact/{p.name}") for p in [artifact, *extra] if p.is_file()]


def ssh_file_option(path: str | Path) -> str:
    """A local path as the value of an ssh `-o` option: ssh splits such values at spaces, unquotes
    them and expands `%` tokens, so the path is double-quoted and `%` doubled."""
    text = str(Path(path).expanduser()).replace("%", "%%")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def remote_python(python: str) -> str:
    """The Python command for the remote shell, quoted; a leading `~/` still means $HOME."""
    if python.startswith("~/"):
        return '"$HOME"/' + shlex.quote(python[2:])
    return shlex.quote(python)


class SshTarget(Target):
    kind = "ssh"

    def __init__(self, url: str, profile=None):
        self.user, self.host, self.port = parse_url(url)  # before anything can reach ssh
        super().__init__(profile.name if profile else url, profile)
        self.url = url
        self.options = profile.ssh if profile else SshOptions()
        self.python = profile.python if profile and profile.python else "python3"

    def ssh_argv(self) -> list[str]:
        """`ssh` with this target's options, `--` and the destination (the remote command is
        appended; after `--` neither the destination nor the command is read as an option)."""
        o = self.options
        argv = ["ssh", "-p", str(self.port), "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                "-o", f"ConnectTimeout={int(max(1, o.connect_timeout_s))}",
                "-o", "ServerAliveInterval=15"]
        if o.check_host_key:
            argv += ["-o", "StrictHostKeyChecking=yes"]
            if o.known_hosts:
                argv += ["-o", f"UserKnownHostsFile={ssh_file_option(o.known_hosts)}"]
        else:
            argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        if o.identity_file:
            # not -i: ssh checks that path as given but loads it after expanding `%` tokens
            argv += ["-o", f"IdentityFile={ssh_file_option(o.identity_file)}", "-o", "IdentitiesOnly=yes"]
        return argv + ["--", f"{self.user}@{self.host}" if self.user else self.host]

    def _ssh(self, command: str, timeout_s: float, what: str, stdin: bytes | None = None
             ) -> subprocess.CompletedProcess:
        try:
            proc = subprocess.run(self.ssh_argv() + [command], input=stdin, capture_output=True,
                                  timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise EdgekdError(f"target {self.name}: {what} timed out after {timeout_s:g} s") from None
        except FileNotFoundError:
            raise EdgekdError("the `ssh` program is not installed (apt-get install openssh-client)") from None
        out = subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(errors="replace"),
                                          proc.stderr.decode(errors="replace"))
        if out.returncode == 255:  # ssh's own failure: unreachable, refused, host key, auth
            raise EdgekdError(f"target {self.name}: cannot reach {self.url}: {self._ssh_failure(out.stderr)}")
        return out

    def _ssh_failure(self, stderr: str) -> str:
        """One line on why ssh itself failed; host-key refusals say which file and what to do."""
        known_hosts = str(Path(self.options.known_hosts or "~/.ssh/known_hosts").expanduser())
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr:
            return (f"its host key differs from the one in {known_hosts} (REMOTE HOST IDENTIFICATION "
                    "HAS CHANGED: a reinstalled board, or someone in between); check it before "
                    "replacing the old key")
        if re.search(r"No \S+ host key is known for", stderr):
            host = f"[{self.host}]:{self.port}" if self.port != 22 else self.host
            return (f"its host key is not in {known_hosts} (unknown host key for {host}); check it, "
                    f"then add it: ssh-keyscan -p {self.port} {self.host} >> {shlex.quote(known_hosts)}")
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        return (lines or ["connection failed"])[-1]

    def _make_dir(self, timeout_s: float) -> str:
        proc = self._ssh('mktemp -d "${TMPDIR:-/tmp}/edgekd-XXXXXXXX"', timeout_s, "creating a temp folder")
        folder = proc.stdout.strip()
        if proc.returncode != 0 or not folder.startswith("/"):
            raise EdgekdError(f"target {self.name}: cannot create a remote temp folder: "
                              f"{proc.stderr.strip() or proc.stdout.strip()}")
        return folder

    def _remove_dir(self, folder: str) -> None:
        # A runner left behind by a time-out is stopped first (ssh does not signal it when the
        # client goes away without a pty); then the folder goes.
        q = shlex.quote(folder)
        command = (f'if [ -f {q}/runner.pid ]; then kill "$(cat {q}/runner.pid)" 2>/dev/null; fi; '
                   f"rm -rf -- {q}")
        try:
            self._ssh(command, 30, "removing the temp folder")
        except EdgekdError:
            pass  # best effort: the run's own error (if any) is the one to report

    def run_runner(self, artifact: Path, inputs: Path, options: dict, timeout_s: float) -> dict:
        """Copy runner + artifact + inputs to a fresh remote folder, run, read JSON, clean up."""
        artifact = Path(artifact)
        files = [(p, p.name) for p in runner_files()] + artifact_files(artifact)
        files.append((Path(inputs), "inputs.npz"))
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            for path, name in files:
                tar.add(str(path), arcname=name, recursive=False)
        remote_model = f"artifact/{artifact.name}"
        folder = self._make_dir(min(timeout_s, 60))
        try:
            argv = " ".join(shlex.quote(a) for a in runner_argv(remote_model, "inputs.npz", options))
            q = shlex.quote(folder)
            command = (f"tar -x -f - -C {q} && cd {q} && echo $$ > runner.pid && "
                       f"exec {remote_python(self.python)} runner.py {argv}")
            what = f"runner on {artifact.name}"
            proc = self._ssh(command, timeout_s, what, stdin=archive.getvalue())
            if proc.returncode == 127:
                raise EdgekdError(f"target {self.name}: Python {self.python!r} not found there "
                                  "(set `python:` in the target profile)")
            result = parse_runner_output(self.name, proc, what)
        finally:
            self._remove_dir(folder)
        result["remote_dir"] = folder
        return result

    def python_info(self, timeout_s: float = 30) -> dict:
        """Python version and installed runtimes of the remote Python."""
        proc = self._ssh(f"{remote_python(self.python)} -", timeout_s, "python check",
                         stdin=CHECK_SCRIPT.encode())
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["?"])[-1]
            raise EdgekdError(f"target {self.name}: Python {self.python!r} failed there: {last}")
        return json.loads(proc.stdout)


def make_target(spec: str, profile=None) -> SshTarget:
    """An SSH target for `ssh://user@host:port` (a profile adds python, keys, power, threads)."""
    return SshTarget(spec, profile)
