"""SIGTERM asks a running `Loop` to save and stop at its next step (one process, main thread).

Multi-host runs use JAX's preemption sync point instead (`Checkpointer.reached_preemption`).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator

import jax

__all__ = ["stop_on_sigterm"]

log = logging.getLogger(__name__)


@contextlib.contextmanager
def stop_on_sigterm(enabled: bool, request_stop: Callable[[], None]) -> Iterator[None]:
  """Inside the block, SIGTERM calls `request_stop()` instead of ending the process.

  ```python
  with stop_on_sigterm(True, lambda: print('saving at the next step')):
    ...
  ```
  """
  if (not enabled or jax.process_count() > 1
      or threading.current_thread() is not threading.main_thread()):
    yield
    return

  def handler(signum, frame):
    del frame
    log.warning("Received signal %d: saving at the next step and stopping", signum)
    request_stop()

  previous = signal.signal(signal.SIGTERM, handler)
  try:
    yield
  finally:
    signal.signal(signal.SIGTERM, previous)
