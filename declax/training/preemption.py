"""SIGTERM, SIGHUP or SIGINT asks a running `Loop` to save and stop at its next step (one
process, main thread).

Multi-host runs use JAX's preemption sync point instead (`Checkpointer.reached_preemption`).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator

import jax

__all__ = ["STOP_SIGNALS", "stop_on_sigterm"]

log = logging.getLogger(__name__)


# Signals that ask a run to save and stop: a scheduler's SIGTERM, a closed terminal's SIGHUP,
# Ctrl-C's SIGINT (a second Ctrl-C aborts at once, without saving).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


def _ignore_repeat(signum, frame):
  del frame
  log.warning("Received signal %d again: already saved and stopping", signum)


@contextlib.contextmanager
def stop_on_sigterm(enabled: bool, request_stop: Callable[[], None]) -> Iterator[None]:
  """Inside the block, SIGTERM, SIGHUP and SIGINT call `request_stop()` instead of ending the
  process. A second SIGINT raises `KeyboardInterrupt` (abort); a repeated SIGTERM/SIGHUP is
  logged and ignored, also after the block when a stop was requested, so that the run that
  saved exits with status 0 (where the process had the default handler).

  ```python
  with stop_on_sigterm(True, lambda: print('saving at the next step')):
    ...
  ```
  """
  if (not enabled or jax.process_count() > 1
      or threading.current_thread() is not threading.main_thread()):
    yield
    return
  received: list[int] = []

  def handler(signum, frame):
    if received and signum == signal.SIGINT:
      raise KeyboardInterrupt  # a second Ctrl-C: the user wants out now
    if received:
      _ignore_repeat(signum, frame)
      return
    received.append(signum)
    log.warning("Received signal %d: saving at the next step and stopping (Ctrl-C again to "
                "abort without saving)", signum)
    request_stop()

  previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
  try:
    yield
  finally:
    for s, before in previous.items():
      keep_ignoring = received and s != signal.SIGINT and before is signal.SIG_DFL
      signal.signal(s, _ignore_repeat if keep_ignoring else before)
