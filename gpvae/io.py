"""Files of run folders and records: JSON read with an error that names the file, every write atomic (a
reader, or a job interrupted mid-write, never leaves half a file behind)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from .options import ConfigError


class RunFolderError(ConfigError):
    """A run folder or record conflicts with the request: missing, damaged, of another model or options."""


def check_writable(path: str | Path, option: str, folder: bool = False) -> Path:
    """Refuse, before any work, a path the library will write (a file, or with ``folder`` a folder) that
    cannot be one: a file where a folder is wanted or the reverse, or a parent that is a file. The error
    names the ``option`` that gave the path."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise RunFolderError(f"{option} {path} is a file, not a folder: choose another {option}")
    if not folder and path.is_dir():
        raise RunFolderError(f"{option} {path} is a folder, not a file: name a file")
    blocking = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise RunFolderError(f"{option} {path}: {blocking} is a file, so no folder can be made there")
    return path


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(partial)`` on a sibling file of this process's own, then rename it to ``path`` (creating
    its folder): jobs writing the same file together each leave a whole one, and a failed write none."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda partial: partial.write_text(text))


def write_json(path: str | Path, obj, sort_keys: bool = False) -> Path:
    """``obj`` as JSON (indent 1), atomically."""
    return write_text(path, json.dumps(obj, indent=1, sort_keys=sort_keys))


def read_json(path: str | Path, hint: str) -> dict:
    """A JSON file the library wrote, or :class:`RunFolderError` naming it and ``hint`` (what to do)."""
    path = Path(path)
    if not path.exists():
        raise RunFolderError(f"{path} does not exist: {hint}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunFolderError(f"{path} is not valid JSON ({err}): it is damaged; {hint}") from None
