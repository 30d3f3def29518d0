"""Files that hold secrets: written private (0600) from their first byte, and atomically.

Card images in the middle of personalization hold ICC master keys, a PIN block and the ICC
private key; key store files hold keys. Creating a file at the process umask and tightening it
afterwards leaves a moment (and, after a kill, a file) where others can read it: here the
temporary file is created with mode 0600 by ``os.open`` itself, then renamed over the target.
"""

from __future__ import annotations

import os
from pathlib import Path

#: how a temporary file of this module is named: ``.NAME.PID.tmp`` next to its target
_TEMP = ".{name}.{pid}.tmp"


def write_private(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Replace ``path`` with ``data``: a 0600 temporary file next to it, renamed over it (a crash
    leaves the old or the new content, never a mix); ``durable`` adds the fsyncs that make the
    rename survive a power cut."""
    tmp = path.with_name(_TEMP.format(name=path.name, pid=os.getpid()))
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
            os.fchmod(fh.fileno(), 0o600)  # before any byte: O_CREAT keeps the mode of a file a killed run left
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        sync_path(path.parent)


def sync_path(path: str | os.PathLike[str], *, data_only: bool = False) -> None:
    """fsync (``data_only``: fdatasync) of a file or a directory by its path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        (os.fdatasync if data_only else os.fsync)(fd)
    finally:
        os.close(fd)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a temporary file or staging directory it owns is in use)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(directory: Path) -> list[Path]:
    """Remove the temporary files of :func:`write_private` left in ``directory`` by processes
    that are gone (a killed run); returns what was removed."""
    removed = []
    for tmp in directory.glob(".*.tmp"):
        pid = tmp.name[: -len(".tmp")].rpartition(".")[2]
        if pid.isdigit() and not process_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
