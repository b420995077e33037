"""Files written so that a reader, a crash or a kill sees the old file or the new one, never half of one.

    with atomic_open(path, "w") as fh:     # a temp file in the same folder, renamed over ``path`` on success
        json.dump(obj, fh)

Every file the package writes for someone else to read (run configs, logs, sample grids, statistics, results)
goes through here, so they all get the same guarantees: the temp file is in the target's folder (so the rename is
atomic on one filesystem), it is removed if writing fails, and the result has the usual permissions (``mkstemp``
alone makes it private to its owner).
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path, mode: str = "w"):
    """Open a temp file beside ``path`` for writing (``"w"`` or ``"wb"``); on a clean exit it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:  # a file object: numpy's savez then does not append ".npz" to the name
            yield fh
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path, text: str) -> Path:
    with atomic_open(path, "w") as fh:
        fh.write(text)
    return Path(path)


def write_json(obj, path, indent: int = 1, sort_keys: bool = False) -> Path:
    with atomic_open(path, "w") as fh:
        json.dump(obj, fh, indent=indent, sort_keys=sort_keys, ensure_ascii=False)
        fh.write("\n")
    return Path(path)


__all__ = ["atomic_open", "write_text", "write_json"]
