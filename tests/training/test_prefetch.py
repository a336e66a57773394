"""Prefetcher: batches in order, the position of the batch handed out, errors passed through."""

import pytest

from declax.training.prefetch import Prefetcher
from tests.training.training_utils import ArrayBatches


def test_batches_in_order_with_the_position_of_the_last_one_taken():
  data = ArrayBatches()
  prefetcher = Prefetcher(lambda: next(data), lambda b: b[0][0, 0, 0, 0], data.get_state,
                          depth=3)
  reference = ArrayBatches()
  for i in range(5):
    assert prefetcher.position == {"index": i}
    assert next(prefetcher) == next(reference)[0][0, 0, 0, 0]
  assert prefetcher.position == {"index": 5}
  prefetcher.close()
  assert data.index > 5  # it read ahead, which is why the Loop rewinds to `position`


def test_end_of_data_and_errors_reach_the_consumer():
  items = iter([1, 2])
  prefetcher = Prefetcher(lambda: next(items), lambda b: b, lambda: None)
  assert [next(prefetcher), next(prefetcher)] == [1, 2]
  with pytest.raises(StopIteration):
    next(prefetcher)
  with pytest.raises(StopIteration):  # and stays ended
    next(prefetcher)

  def broken():
    raise OSError("disk gone")

  failing = Prefetcher(broken, lambda b: b, lambda: None)
  with pytest.raises(OSError, match="disk gone"):
    next(failing)
  failing.close()
