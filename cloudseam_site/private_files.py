"""The data folder is private: it holds the SQLite database (session keys), the secret key, Redis's
dump and the logs. The folder is 0700 and its files 0600, whoever created them and whenever.

`make_private` runs at settings import (fixing a folder made by an older CloudSeam or by hand);
`serve` and the embedded Redis also set the umask, so every file they and their children create
(database, -wal, -shm, redis.rdb, logs) is born private.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

PRIVATE_UMASK = 0o077
FOLDER_MODE = 0o700
FILE_MODE = 0o600
SUBFOLDERS = ("logs",)


def _tighten(path: Path, mode: int) -> None:
    """chmod what we own; best effort: a folder we cannot change must not stop CloudSeam starting."""
    try:
        info = path.lstat()
        if info.st_uid == os.getuid() and info.st_mode & 0o777 & ~mode:
            path.chmod(mode)
    except OSError:
        pass


def make_private(folder: Path) -> None:
    """Create `folder` if needed; make it 0700, and its files (and those of its logs folder) 0600."""
    folder.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
    for directory in (folder, *(folder / name for name in SUBFOLDERS)):
        if not directory.is_dir() or directory.is_symlink():
            continue
        _tighten(directory, FOLDER_MODE)
        for child in directory.iterdir():
            if child.is_file() and not child.is_symlink():
                _tighten(child, FILE_MODE)


def use_private_umask() -> None:
    """From now on this process (and the children it starts) creates files only its owner can read."""
    os.umask(os.umask(PRIVATE_UMASK) | PRIVATE_UMASK)


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Files created inside the block (and by children started in it) are private."""
    old = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(old)
