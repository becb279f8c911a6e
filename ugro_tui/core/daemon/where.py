"""Where the daemon's socket, lock, record and log live, and the checks that keep them private.

The socket sits in a 0700 folder of its own, named by a hash of the state dir (a Unix socket's path must fit in
108 bytes, and tests' state dirs are long): `$XDG_RUNTIME_DIR/ugro-daemon/` when that is short enough, else
`/tmp/ugro-UID/`."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from ugro_tui import paths
from ugro_tui.errors import UgroError

SOCKET_MAX = 100  # bytes: below sun_path's 108 with room to spare


class UnsafeFolder(UgroError):
    pass


def state() -> Path:
    return paths.state_dir()


def lock_path() -> Path:
    return state() / "daemon.lock"


def record_path() -> Path:
    """pid, version, socket and start time of the daemon that holds the lock (JSON)."""
    return state() / "daemon.json"


def log_path() -> Path:
    return state() / "daemon.log"


def _key() -> str:
    return hashlib.sha256(str(state().resolve()).encode()).hexdigest()[:16]


def socket_folder() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime) and len(runtime) + 40 < SOCKET_MAX:
        return Path(runtime) / "ugro-daemon"
    return Path("/tmp") / f"ugro-{os.getuid()}"


def socket_path() -> Path:
    return socket_folder() / f"{_key()}.sock"


def private_folder(create: bool = True) -> Path:
    """The socket's folder, made 0700 if absent; one that another user owns, or that others may read or enter,
    is refused with the reason (a socket there could be replaced or reached by them)."""
    folder = socket_folder()
    if create:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        st = folder.lstat()
    except FileNotFoundError:
        return folder
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeFolder(f"{folder} is not a folder; the daemon's socket needs a private one")
    if st.st_uid != os.getuid():
        raise UnsafeFolder(f"{folder} belongs to uid {st.st_uid}, not to you; remove it or set XDG_RUNTIME_DIR")
    if st.st_mode & 0o077:
        raise UnsafeFolder(f"{folder} is mode {stat.S_IMODE(st.st_mode):o}: others may reach the daemon's "
                           f"socket there; `chmod 700 {folder}` or remove it")
    return folder
