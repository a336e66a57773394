"""Reading and placing training batches ahead of the step, in a background thread.

While the device runs step `s`, the thread already reads batch `s + 1` from the iterator and puts
it on the devices, so the host's data work overlaps the computation instead of adding to it. The
iterator's position is recorded after every batch, so a checkpoint stores the position of the
last batch actually trained on, not of the ones read ahead.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Prefetcher"]

_END = object()


class Prefetcher:
  """`next(p)` -> the next placed batch; `p.position` -> the data state after that batch.

  **Arguments**
  - `next_batch`: returns the next host batch (raises `StopIteration` at the end).
  - `place`: puts a host batch on the devices (e.g. `shard_batch`).
  - `get_state`: returns the iterator's position (JSON), or None when it has none.
  - `depth`: how many placed batches may wait ahead of the step.
  """

  def __init__(self, next_batch: Callable[[], Any], place: Callable[[Any], Any],
               get_state: Callable[[], Any], depth: int = 2):
    self._next_batch, self._place, self._get_state = next_batch, place, get_state
    self._queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
    self._stop = threading.Event()
    self.position = get_state()
    self._thread = threading.Thread(target=self._work, name="declax-prefetch", daemon=True)
    self._thread.start()

  def _work(self) -> None:
    try:
      while not self._stop.is_set():
        batch = self._next_batch()
        item = (self._place(batch), self._get_state())
        while not self._stop.is_set():
          try:
            self._queue.put(item, timeout=0.1)
            break
          except queue.Full:
            continue
    except StopIteration:
      self._queue.put(_END)
    except BaseException as error:  # re-raised in the training thread
      self._queue.put(error)

  def __next__(self) -> Any:
    item = self._queue.get()
    if item is _END:
      self._queue.put(_END)
      raise StopIteration
    if isinstance(item, BaseException):
      self._queue.put(item)
      raise item
    batch, self.position = item
    return batch

  def close(self) -> None:
    """Stops the thread. Batches it read ahead are dropped (the iterator has moved past them)."""
    self._stop.set()
    while self._thread.is_alive():
      try:
        self._queue.get_nowait()
      except queue.Empty:
        pass
      self._thread.join(timeout=0.05)
