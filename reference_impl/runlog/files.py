"""Files that survive a crash: atomic replacement (a reader sees the old or the new
content, never a mix), fsync of files and folders, and content hashes."""

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Union

PathLike = Union[str, os.PathLike]

TMP_PREFIX = ".tmp-"
"""Prefix of the hidden temporary files and folders of an interrupted write."""


def fsync_dir(path: Path) -> None:
    """Make a rename or file creation inside ``path`` durable (POSIX only)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush ``path``'s content to disk."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically: readers see the old or the new content,
    never a mix, even if the process dies half-way."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_of(path: Path) -> str:
    """The SHA-256 hex digest of the file ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_disk_full(err: BaseException) -> bool:
    """True for "no space left" in any of its guises (torch.save wraps ENOSPC in a
    RuntimeError that says only "unexpected pos")."""
    import errno

    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ("unexpected pos" in text
                                               or "No space left" in text)


def free_bytes(directory: Path) -> int:
    """Free bytes on the file system of ``directory`` (0 if it cannot be read)."""
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return 0


__all__ = ["PathLike", "TMP_PREFIX", "atomic_write_bytes", "atomic_write_text", "fsync_dir",
           "fsync_file", "free_bytes", "is_disk_full", "sha256_of"]
