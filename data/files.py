"""Atomic file writing: a reader never sees a half-written file, and a failure leaves the old one.

Kept apart from data.writer (the TFRecord shards) so that light tools, such as the experiment
drivers and their dry runs, write their files without importing TensorFlow.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile


def write_atomic(path: str, data: str | bytes) -> None:
    """Atomically (a unique temporary file, then rename: concurrent writers never collide)."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_json(path: str, obj: dict) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True))


LOCK_NAME = ".lock"


class FolderLocked(RuntimeError):
    """Another live process holds the folder's lock."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process: alive
        return True
    return True


class FolderLock:
    """An exclusive claim on a run or output folder: FOLDER/.lock, created with O_EXCL, holds
    the owner's pid, host, start time and command line, and is removed on exit.

    A second process that finds the lock of a live process on the same host raises
    FolderLocked naming that pid and command; a lock whose pid is gone (a process killed with
    SIGKILL cannot remove it) is taken over with a message. A lock from another host cannot be
    checked and is refused: remove FOLDER/.lock by hand once that run is over.

        with FolderLock(model_dir, flag="--model_dir"):
            ...   # the only writer of model_dir
    """

    def __init__(self, folder: str, flag: str = "", stream=None):
        import sys
        self.folder, self.flag = folder, flag
        self.path = os.path.join(folder, LOCK_NAME)
        self.stream = stream or sys.stderr
        self.owned = False

    def _owner(self) -> dict:
        try:
            with open(self.path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def acquire(self) -> None:
        import socket
        import sys
        import time
        os.makedirs(self.folder, exist_ok=True)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                  "command": " ".join(sys.argv)}
        for _ in range(100):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                pid, host = owner.get("pid"), owner.get("host")
                if not owner:        # being written this instant, or unreadable: look again
                    time.sleep(0.05)
                    owner = self._owner()
                    pid, host = owner.get("pid"), owner.get("host")
                where = f"{self.flag}={self.folder}" if self.flag else self.folder
                if owner and host == record["host"] and isinstance(pid, int) and not _alive(pid):
                    stale = f"{self.path}.stale.{os.getpid()}"
                    try:
                        os.replace(self.path, stale)    # atomic: one taker wins
                    except FileNotFoundError:
                        continue
                    os.remove(stale)
                    print(f"{where}: taking over the lock of pid {pid}, which is gone "
                          f"({owner.get('command', '?')})", file=self.stream, flush=True)
                    continue
                if not owner:
                    raise FolderLocked(f"{where} is locked ({self.path} is unreadable); if no "
                                       "run uses it, remove that file") from None
                if host != record["host"]:
                    raise FolderLocked(f"{where} is in use by pid {pid} on host {host} "
                                       f"({owner.get('command', '?')}); if that run is over, "
                                       f"remove {self.path}") from None
                raise FolderLocked(f"{where} is in use by pid {pid} "
                                   f"({owner.get('command', '?')}); wait for it to finish or "
                                   "choose another folder") from None
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
            self.owned = True
            return
        raise FolderLocked(f"{self.path}: could not take the lock")

    def release(self) -> None:
        if self.owned and self._owner().get("pid") == os.getpid():
            with contextlib.suppress(OSError):
                os.remove(self.path)
        self.owned = False

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
        return False
