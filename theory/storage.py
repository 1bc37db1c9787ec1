"""Writing results so that damage is seen, never read: atomic files, checksums, locks.

Every file the project writes (Datasets, sweep chunks, generated kernels, compiled
closed forms) goes through `write_atomically`: a reader sees the old file or the
whole new one, never half of one. A file that is kept to be reused later (a sweep's
chunk) has its SHA-256 recorded (`sha256`) and checked before it is trusted.
`exclusive` keeps two processes from working on one output at once.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from theory.errors import InputError


def write_atomically(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call write(tmp) on a temporary file beside `path`, then rename it over `path`.

    The file gets the umask's permissions (mkstemp's 0600 would hide results
    from other users).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def cache_folder(name: str) -> Path:
    """A folder of the project's cache: $TMS_DROPOUT_CACHE/name, or ~/.cache/tms-dropout/name
    ($XDG_CACHE_HOME in place of ~/.cache when set); a temporary folder if that cannot be made."""
    root = os.environ.get("TMS_DROPOUT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tms-dropout"
    )
    folder = Path(root) / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    except OSError:
        fallback = Path(tempfile.gettempdir()) / f"tms-dropout-{name}"
        fallback.mkdir(parents=True, exist_ok=True)
        return fallback


def save_dataset(ds, path: str | Path) -> Path:
    """Write an xarray Dataset as netCDF, atomically."""
    return write_atomically(path, ds.to_netcdf)


def save_text(text: str, path: str | Path) -> Path:
    """Write a text file atomically."""
    return write_atomically(path, lambda tmp: Path(tmp).write_text(text))


def sha256(path: str | Path) -> str:
    """The file's SHA-256, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def exclusive(lock_path: str | Path, what: str, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on `lock_path` for the block.

    If another process holds it: with wait=False an InputError naming it,
    with wait=True wait for it (for short critical sections). The lock is
    the kernel's (flock): it is released when the process ends, however it
    ends, so a killed run never leaves a stale lock behind.
    """
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise InputError(
                f"another process is already working on {what} (it holds {lock_path}); "
                "wait for it to finish, or write somewhere else"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
