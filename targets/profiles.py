"""Target profiles: YAML files that name a device, and `get_target` which turns a spec into one.

A spec is `local`, `ssh://user@host:port`, a profile file (`*.yaml`), or a profile name found in
the search path below (first match wins):

    ./edgekd-targets/<name>.yaml        next to the project (commit it with the recipes)
    ~/.config/edgekd/targets/<name>.yaml  per user

A profile (every key but `target` optional):

    name: pi5                                   # default: the file name
    target: ssh://pi@raspberrypi.local:22       # or local
    python: ~/edgekd-device/bin/python          # the Python that runs the runner there
    threads: [1, 4]                             # thread counts worth benchmarking
    cpus: [0, 1]                                # local only: CPU affinity of the runner
    power: {watts_per_core: 1.5}                # for the `estimate` energy meter
    energy: auto                                # default meter (auto, rapl, hwmon, command, ...)
    energy_command: "usbmeter --watts"          # for the `command` meter
    ssh: {identity_file: ~/.ssh/id_ed25519, known_hosts: ~/.ssh/known_hosts,
          check_host_key: true, connect_timeout_s: 10}
    notes: "Raspberry Pi 5, 8 GB, active cooler"

The kind of target is the module of that name in this package (`local` -> targets/local.py,
`ssh://` -> targets/ssh.py): a new kind of device is one new file, no registry.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError

PROFILE_DIRS = (Path("edgekd-targets"), Path("~/.config/edgekd/targets"))


@dataclass
class SshOptions:
    identity_file: str | None = None
    known_hosts: str | None = None     # default: ssh's own (~/.ssh/known_hosts)
    check_host_key: bool = True        # false only for throw-away boards on a private network
    connect_timeout_s: float = 10.0


@dataclass
class Power:
    watts_per_core: float | None = None


@dataclass
class Profile:
    target: str
    name: str | None = None
    python: str | None = None
    threads: list[int] = field(default_factory=lambda: [1])
    cpus: list[int] | None = None
    power: Power = field(default_factory=Power)
    energy: str = "auto"
    energy_command: str | None = None
    ssh: SshOptions = field(default_factory=SshOptions)
    notes: str | None = None
    path: str | None = None

    def __post_init__(self):
        if not self.threads or any(t < 1 for t in self.threads):
            raise ValueError("threads must be a non-empty list of positive integers")
        if self.power.watts_per_core is not None and self.power.watts_per_core <= 0:
            raise ValueError("power.watts_per_core must be > 0")


def profile_dirs() -> list[Path]:
    """The folders searched for `<name>.yaml`, in order."""
    return [d.expanduser() for d in PROFILE_DIRS]


def load_profile(path: str | Path) -> Profile:
    """Load and validate one profile file; errors name the file and the key."""
    import yaml

    from edgekd.config import from_dict

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EdgekdError(f"target profile {path}: cannot read ({exc.strerror})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise EdgekdError(f"target profile {path} is not valid YAML: {first}") from None
    if not isinstance(data, dict):
        raise EdgekdError(f"target profile {path} must be a mapping with at least 'target'")
    data.pop("path", None)
    try:
        profile = from_dict(Profile, data)
    except EdgekdError as exc:
        raise EdgekdError(f"target profile {path}: {str(exc).replace('recipe ', '')}") from None
    profile.name = profile.name or path.stem
    profile.path = str(path)
    if target_kind(profile.target) == "profile":
        raise EdgekdError(f"target profile {path}: 'target' must be local or ssh://user@host:port, "
                          f"got {profile.target!r}")
    return profile


def find_profiles() -> list[Profile]:
    """Every profile in the search path (a name seen twice: the first folder wins)."""
    found: dict[str, Profile] = {}
    for folder in profile_dirs():
        for path in sorted(folder.glob("*.y*ml")) if folder.is_dir() else []:
            profile = load_profile(path)
            found.setdefault(profile.name, profile)
    return list(found.values())


def find_profile(name: str) -> Profile:
    """The profile called `name` (a file path, or a name in the search path)."""
    if name.endswith((".yaml", ".yml")) or "/" in name:
        if not Path(name).is_file():
            raise EdgekdError(f"target profile file not found: {name}")
        return load_profile(name)
    for folder in profile_dirs():
        for suffix in (".yaml", ".yml"):
            if (folder / f"{name}{suffix}").is_file():
                return load_profile(folder / f"{name}{suffix}")
    for profile in find_profiles():  # a `name:` inside a file named otherwise
        if profile.name == name:
            return profile
    searched = ", ".join(str(d) for d in profile_dirs())
    raise EdgekdError(f"unknown target '{name}': not local, not ssh://user@host:port, and no "
                      f"profile of that name in {searched}")


def target_kind(spec: str) -> str:
    """`local`, the URL scheme of `scheme://...`, or `profile`."""
    if spec == "local":
        return "local"
    match = re.match(r"^([a-z][a-z0-9_]*)://", spec)
    return match.group(1) if match else "profile"


def get_target(spec: Any):
    """A Target for `spec`: `local`, `ssh://user@host:port`, a profile name or profile file.

    A Target passed in is returned as is. The kind is the module of that name in
    `edgekd.targets`, which provides `make_target(spec: str, profile: Profile | None)`.
    """
    if not isinstance(spec, str):
        return spec
    profile = None
    if target_kind(spec) == "profile":
        profile = find_profile(spec)
        spec = profile.target
    kind = target_kind(spec)
    try:
        module = importlib.import_module(f"edgekd.targets.{kind}")
    except ModuleNotFoundError:
        raise EdgekdError(f"unknown kind of target '{kind}://' (no edgekd/targets/{kind}.py)") from None
    return module.make_target(spec, profile)


def target_slug(spec: Any) -> str:
    """A folder-safe name for a target: `local`, the profile name, `ssh-user-host-port`."""
    name = spec if isinstance(spec, str) else spec.name
    if isinstance(spec, str) and target_kind(spec) == "profile":
        name = find_profile(spec).name
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name.replace("://", "-")).strip("-.")
    return slug or "target"
