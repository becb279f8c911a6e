"""The one way ugro replaces a file on this machine: a crash leaves the old content or the new, never half of each.

A temp file beside the target (same folder, so the rename is atomic), written and fsynced, renamed over the target,
then the folder fsynced so the rename itself survives a power cut. Node code (agent, node store) keeps its own
stdlib copy: it runs on the nodes under Python 3.8 and imports nothing from ugro.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


def write_atomic(path: str | os.PathLike[str], data: bytes | str, *, mode: int | None = None,
                 durable: bool = True) -> None:
    """Replace `path` with `data`. `mode`: the file's permissions (the old file's, else 0o644, when None);
    durable=False skips both fsyncs, for caches whose loss costs only time."""
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    if mode is None:
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    # Created with its final mode: a token or key is never readable by others, not even for a moment.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)  # os.open's mode is masked by the umask; the old file's mode is kept exactly
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make a rename or a new file in `folder` survive a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
