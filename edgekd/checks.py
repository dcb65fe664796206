"""Checks that run before any work: output locations, model weights, energy meter names.

The README promises that a bad input is one line on stderr and exit 2 *before anything is
written*. These helpers are what the commands call first, so a mistake that would otherwise
surface after an hour of conversion or measurement (an --out that is a file, a read-only folder,
a truncated weights file) fails in a second, and leaves the output location as it was.
Stdlib only: `targets/` and the CLI may import this module cheaply.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path

from edgekd.errors import EdgekdError

# Longest suffix edgekd adds to an output name for its temporary siblings: `.NAME.partial`
# (staging folders) and `.NAME.XXXXXXXX.tmp` (mkstemp in write_text_atomic).
_TEMP_NAME_EXTRA = len("..12345678.tmp")
_SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024  # the format's own limit on the JSON header


def _nearest_existing(path: Path) -> Path:
    """`path` itself or its closest ancestor that exists."""
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(os.sep)


def _check_names(path: Path, what: str) -> None:
    """Refuse a path whose own name (with edgekd's temporary suffix) or whole length the file
    system cannot hold: today that only shows when the first file is written, at the end."""
    anchor = _nearest_existing(path.parent)
    try:
        name_max = os.pathconf(anchor, "PC_NAME_MAX")
        path_max = os.pathconf(anchor, "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    for part in path.parts:
        if len(os.fsencode(part)) > name_max:
            raise EdgekdError(f"{what} {_short(path)}: the name '{_short(Path(part))}' is too long "
                              f"({len(os.fsencode(part))} bytes; this file system allows {name_max})")
    if len(os.fsencode(path.name)) + _TEMP_NAME_EXTRA > name_max:
        raise EdgekdError(f"{what} {_short(path)}: the name is too long ({len(path.name)} "
                          f"characters; keep it under {name_max - _TEMP_NAME_EXTRA})")
    # 64: room for what edgekd writes inside an output folder (exports/<name>/model.onnx)
    if len(os.fsencode(str(path.absolute()))) + _TEMP_NAME_EXTRA + 64 > path_max:
        raise EdgekdError(f"{what} {_short(path)}: the path is too long for this file system")


def _check_writable(folder: Path, what: str, target: Path) -> None:
    """Create and remove a temporary file in `folder`: the one test that holds for root, read-only
    mounts and immutable folders alike (os.access answers yes to root)."""
    if not folder.is_dir():
        raise EdgekdError(f"{what} {target}: {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".edgekd-probe-")
    except OSError as exc:
        raise EdgekdError(f"{what} {target}: cannot write in {folder} "
                          f"({exc.strerror or type(exc).__name__})") from None
    os.close(fd)
    os.unlink(probe)


def check_output_dir(path: str | os.PathLike, what: str = "--out") -> Path:
    """A folder edgekd will create or fill (a run folder, an export folder, a comparison
    folder): refuse an existing file, a name too long, or a place that cannot be written."""
    path = Path(path)
    _check_names(path, what)
    if path.exists() and not path.is_dir():
        raise EdgekdError(f"{what} {path} exists and is not a folder")
    if path.is_dir():
        # Files are written inside it, and staging folders beside it.
        _check_writable(path, what, path)
        _check_writable(path.parent, what, path)
        return path
    anchor = _nearest_existing(path.parent)
    if not anchor.is_dir():
        raise EdgekdError(f"{what} {path}: {anchor} is a file, not a folder")
    _check_writable(anchor, what, path)
    return path


def check_output_file(path: str | os.PathLike, what: str = "--out") -> Path:
    """A file edgekd will write atomically (temp name beside it, then rename): refuse a folder
    of that name, a name too long, or a folder that cannot be written."""
    path = Path(path)
    _check_names(path, what)
    if path.is_dir():
        raise EdgekdError(f"{what} {path} is an existing folder; name a file")
    if path.exists() and not path.is_file():
        raise EdgekdError(f"{what} {path} exists and is not a regular file")
    anchor = _nearest_existing(path.parent)
    if path.parent.exists():
        _check_writable(path.parent, what, path)
    elif not anchor.is_dir():
        raise EdgekdError(f"{what} {path}: {anchor} is a file, not a folder")
    else:
        _check_writable(anchor, what, path)
    return path


def safetensors_header(path: str | os.PathLike) -> dict:
    """Open a .safetensors file's header (8-byte length + JSON: tensor name -> dtype, shape,
    data_offsets) and check that the file holds every tensor it lists: a truncated or corrupt
    download is refused before any work, not as a raw SafetensorError halfway through a run."""
    path = Path(path)
    size = path.stat().st_size
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise ValueError("shorter than its 8-byte header length")
            (length,) = struct.unpack("<Q", head)
            if length > min(size - 8, _SAFETENSORS_MAX_HEADER):
                raise ValueError("its header length runs past the end of the file")
            header = json.loads(handle.read(length))
    except (OSError, ValueError) as exc:
        raise EdgekdError(f"weights file {path} is corrupt or truncated ({_first(exc)})") from None
    if not isinstance(header, dict):
        raise EdgekdError(f"weights file {path} is corrupt (its header is not a JSON object)")
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    try:
        ends = [int(entry["data_offsets"][1]) for entry in tensors.values()]
    except (TypeError, KeyError, IndexError, ValueError):
        raise EdgekdError(f"weights file {path} is corrupt (a tensor without data_offsets)") from None
    needed = 8 + length + max(ends, default=0)
    if needed > size:
        raise EdgekdError(f"weights file {path} is truncated: its header lists {needed} bytes, "
                          f"the file has {size}")
    return tensors


def check_safetensors(path: str | os.PathLike) -> None:
    """`safetensors_header` for its checks alone."""
    safetensors_header(path)


def check_weights(folder: str | os.PathLike, what: str) -> None:
    """A local model folder's weights, checked without loading them: safetensors headers read
    and sizes checked; pickled `.bin` weights refused (loading them runs arbitrary code)."""
    folder = Path(folder)
    safetensors = sorted(folder.glob("*.safetensors"))
    pickled = sorted(p for p in folder.glob("*.bin") if not p.name.startswith("training_args"))
    if not safetensors and pickled:
        raise EdgekdError(f"{what} folder {folder} holds only pickled weights ({pickled[0].name}); "
                          "edgekd loads safetensors only: re-save the model with "
                          "save_pretrained(..., safe_serialization=True)")
    if not safetensors:
        raise EdgekdError(f"{what} folder {folder} has no weights (*.safetensors)")
    for path in safetensors:
        check_safetensors(path)


def check_energy_meter(name: str, where: str) -> None:
    """Refuse an energy meter name the runner does not know (it would fail on the device)."""
    from edgekd.benchmarks.energy import METERS

    if name not in ("auto", "none", *METERS):
        raise EdgekdError(f"{where}: unknown energy meter '{name}' "
                          f"(choose: auto, none, {', '.join(METERS)})")


def _short(path: Path, limit: int = 60) -> str:
    text = str(path)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _first(exc: BaseException) -> str:
    return (str(exc).strip() or type(exc).__name__).splitlines()[0][:200]


def check_artifact_files(path: str | os.PathLike, fmt: str) -> None:
    """The files an artifact needs beside it, named when missing (OpenVINO's runtime only says
    "Exception from src/inference/src/cpp/core.cpp" for an .xml without its .bin)."""
    path = Path(path)
    if fmt == "openvino" and path.suffix == ".xml":
        weights = path.with_suffix(".bin")
        if not weights.is_file():
            raise EdgekdError(f"OpenVINO model {path} needs its weights file {weights.name} beside "
                              "it, which is missing")
