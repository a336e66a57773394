"""The run's output directory: checked writable up front, and locked so only one run uses it.

Two runs writing checkpoints into the same directory would each delete the other's files (both
keep "the newest N" by their own count). `lock_workdir` takes an exclusive `fcntl.flock` on
`WORKDIR/.declax.lock` and writes the owner (pid, host, start time) into it. The kernel drops
the lock when its process exits for any reason, SIGKILL included, so a lock file left behind
by a dead run is stale by construction and is simply taken over. Only process 0 of a
multi-host job takes it (all processes share the directory).

```python
lock = lock_workdir('/tmp/run')      # WorkdirError if not writable, WorkdirLockedError if busy
...
lock.release()
```
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import tempfile
import threading
import time

from declax.errors import DeclaxError

__all__ = ["LOCK_NAME", "WorkdirError", "WorkdirLock", "WorkdirLockedError", "check_layout",
           "check_writable", "lock_workdir"]

log = logging.getLogger(__name__)

LOCK_NAME = ".declax.lock"


class WorkdirError(DeclaxError, OSError):
  """The output directory cannot be created or written (permissions, a file in the way, a
  read-only or full file system). Nothing was written."""


class WorkdirLockedError(DeclaxError, RuntimeError):
  """Another live process holds the output directory's lock (`owner`: what it wrote)."""

  def __init__(self, directory: str, owner: dict):
    self.directory, self.owner = directory, owner
    who = ", ".join(f"{k} {v}" for k, v in owner.items()) or "unknown owner"
    super().__init__(f"output directory {directory} is in use by another declax run ({who}): "
                     "two runs writing the same checkpoints would delete each other's. Wait "
                     "for it to finish (or stop it), or use another output directory.")


def check_writable(directory: str | os.PathLike) -> str:
  """Creates `directory` if needed and proves it writable; returns its absolute path.

  Raises `WorkdirError` naming the directory and the OS's reason.
  """
  path = os.path.abspath(os.fspath(directory))
  if os.path.islink(path) and not os.path.exists(path):
    raise WorkdirError(f"output directory {path} is a symbolic link to {os.readlink(path)}, "
                       "which does not exist; create the target or fix the link")
  try:
    os.makedirs(path, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=".declax-write-test-", dir=path)
    try:
      os.write(fd, b"ok")
    finally:
      os.close(fd)
      os.remove(probe)
  except OSError as error:
    reason = f"{type(error).__name__}: {error.strerror or error}"
    failure = WorkdirError(f"output directory {path} is not writable ({reason}); choose "
                           "another one (--workdir / output_dir) or fix its permissions")
    raise failure from error
  return path


# Locks this process holds, by path: a second Loop on the same directory in the same process
# (e.g. resuming in a notebook) shares it instead of locking itself out.
_HELD: dict[str, list] = {}
_HELD_LOCK = threading.Lock()


class WorkdirLock:
  """A held lock on a directory; `release()` (idempotent) lets other runs in."""

  def __init__(self, path: str):
    self.path = path
    self._released = False

  def release(self) -> None:
    with _HELD_LOCK:
      if self._released:
        return
      self._released = True
      entry = _HELD.get(self.path)
      if entry is None:
        return
      entry[1] -= 1
      if entry[1] == 0:
        del _HELD[self.path]
        _unlock(entry[0])


def _unlock(fd: int) -> None:
  import fcntl

  try:
    fcntl.flock(fd, fcntl.LOCK_UN)
  finally:
    os.close(fd)


def _read_owner(path: str) -> dict:
  try:
    with open(path) as f:
      owner = json.load(f)
    return owner if isinstance(owner, dict) else {}
  except (OSError, ValueError):
    return {}


# What a run writes into its directory, and the kind of entry each must be.
_LAYOUT = {LOCK_NAME: "file", "metrics.jsonl": "file", "config.json": "file",
           "checkpoints": "directory"}


def check_layout(directory: str) -> None:
  """`WorkdirError` if something of the wrong kind is in the way of what a run writes there
  (a directory named `metrics.jsonl`, a file named `checkpoints`, ...), before any training."""
  for name, kind in _LAYOUT.items():
    path = os.path.join(directory, name)
    if not os.path.lexists(path):
      continue
    is_dir = os.path.isdir(path)
    if (kind == "file") == is_dir or not os.path.exists(path):
      found = "a directory" if is_dir else ("a dangling link" if not os.path.exists(path)
                                            else "a file")
      raise WorkdirError(f"{path} is {found}, but a run writes a {kind} there; move it away, "
                         "or use another output directory")


def lock_workdir(directory: str | os.PathLike) -> WorkdirLock:
  """Checks that `directory` is writable and takes its run lock (see the module docstring).

  Raises `WorkdirError` or `WorkdirLockedError`. Where the file system has no `flock` (some
  network file systems), a warning is logged and no lock is taken.
  """
  directory = check_writable(directory)
  check_layout(directory)
  path = os.path.join(directory, LOCK_NAME)
  with _HELD_LOCK:
    if path in _HELD:
      _HELD[path][1] += 1
      return WorkdirLock(path)
    import fcntl

    previous = _read_owner(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
      os.close(fd)
      if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise WorkdirLockedError(directory, _read_owner(path)) from None
      log.warning("Cannot lock %s (%s): nothing stops another run from using the same "
                  "directory", path, error)
      return WorkdirLock(path)
    if previous:
      log.info("Taking over the lock of %s left by a run that ended (%s)", directory, previous)
    owner = {"pid": os.getpid(), "host": socket.gethostname(),
             "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(owner).encode(), 0)
    _HELD[path] = [fd, 1]
    return WorkdirLock(path)
