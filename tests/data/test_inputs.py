"""declax's stream combinators: exact resume (shuffle buffers, half-filled buckets), errors, and
use as a TrainTask's data. Trax's own cases are in tests/trax_compat/test_inputs.py."""

import json

import numpy as np
import pytest

from declax import data
from declax.data.inputs_stream import PipelineStateError
from tests.reliability.catalogue import CATALOGUE

WORDS = "the a cat dog sat on mat ran far away quick brown fox jumps over lazy".split()


def _sentences(n=400, seed=0):
  rng = np.random.default_rng(seed)
  return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 12)))) for _ in range(n)]


def _text_pipeline(sentences, queue_size=32):
  """Trax's recipe: Tokenize -> Shuffle -> FilterByLength -> BucketByLength -> AddLossWeights."""
  return data.Serial(
      lambda _: sentences,
      lambda g: ((s, s[::-1]) for s in g),   # a plain Python step, restored by replaying
      data.Tokenize(vocab_type="char", n_reserved_ids=1),
      data.Shuffle(queue_size),
      data.FilterByLength(max_length=60, length_keys=[0, 1]),
      data.BucketByLength(boundaries=[16, 32], batch_sizes=[8, 4, 2], length_keys=[0, 1]),
      data.AddLossWeights(id_to_mask=0),
  )


def _same(batches_a, batches_b):
  assert len(batches_a) == len(batches_b)
  for a, b in zip(batches_a, batches_b, strict=True):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
      np.testing.assert_array_equal(x, y)
      assert x.dtype == y.dtype


def _take(stream, n):
  return [next(stream) for _ in range(n)]


@pytest.mark.parametrize("n_before", [1, 5, 12])
def test_resume_is_exact_with_buffers_and_half_filled_buckets(n_before):
  sentences = _sentences()
  straight = _text_pipeline(sentences)()
  expected = _take(straight, n_before + 10)

  first = _text_pipeline(sentences)()
  _take(first, n_before)
  state = json.loads(json.dumps(first.get_state()))  # what a checkpoint stores
  grain_state = json.dumps(state)
  assert '"phase": "stream"' in grain_state  # the shuffle queue is full and saved ...
  buckets = _find_stage(state["grain"], "BucketByLength")["own"]
  assert any(bucket for bucket in buckets)  # ... and some bucket is half-filled

  fresh = _text_pipeline(sentences)()
  fresh.set_state(state)
  _same(_take(fresh, 10), expected[n_before:])


def _find_stage(state, prefix):
  while not state["stage"].startswith(prefix):
    state = state["parents"][0]
  return state


def test_batches_are_bucketed_and_weighted():
  batches = _take(_text_pipeline(_sentences())(), 20)
  for inputs, targets, weights in batches:
    assert inputs.shape[1] in (16, 32, 64) or inputs.shape[1] <= 60
    assert inputs.shape[0] in (8, 4, 2)
    np.testing.assert_array_equal(weights, (targets != 0).astype(np.float32))
    assert inputs.dtype == np.int32 and weights.dtype == np.float32


def test_batch_of_dicts():
  batch = next(data.Batch(2)([{"ids": np.arange(n), "label": n} for n in (2, 3)]))
  assert batch["ids"].tolist() == [[0, 1, 0], [0, 1, 2]] and batch["label"].tolist() == [2, 3]
  step = data.BucketByLength([2], [2, 5], length_keys=["ids"])
  short = next(step([{"ids": np.arange(n)} for n in (1, 3, 2)]))
  assert short["ids"].tolist() == [[0, 0], [0, 1]]


def test_append_value_keeps_int32_ids():
  ids = np.array([5, 6], np.int32)
  out = next(data.AppendValue({0: [1]})([(ids, ids)]))
  assert out[0].dtype == np.int32 and out[0].tolist() == [5, 6, 1]
  assert out[1] is ids
  floats = next(data.AppendValue({0: [0.5]})([(ids,)]))[0]
  assert floats.dtype == np.float64  # a float does not fit: NumPy's promotion, as in Trax


def test_state_of_another_pipeline_is_refused():
  sentences = _sentences()
  stream = _text_pipeline(sentences)()
  next(stream)
  other = _text_pipeline(sentences, queue_size=64)()
  with pytest.raises(PipelineStateError, match="different pipeline") as info:
    other.set_state(stream.get_state())
  assert "Shuffle(queue_size=32" in str(info.value) and "Shuffle(queue_size=64" in str(info.value)
  assert CATALOGUE["TX6"] in str(info.value)
  with pytest.raises(PipelineStateError, match="not a declax.data stream position"):
    other.set_state({"grain": {}})


def test_peek_then_rewind_like_train_task():
  stream = _text_pipeline(_sentences())()
  position = stream.get_state()
  first = next(stream)
  stream.set_state(position)  # TrainTask.sample_batch peeks this way
  _same([next(stream)], [first])


@pytest.mark.parametrize("items", [
    [(np.arange(i, dtype=np.int32), np.ones(3 - i % 3, np.float32)) for i in range(10)],
    [(np.arange(i), "text") for i in range(10)],                    # not packable: generic path
    [(np.arange(3),)] * 3,                                           # too short to pack
    [(np.zeros((2, 2)),)] * 9,                                       # 2-D: generic path
])
def test_state_encoding_round_trips(items):
  from declax.data.inputs_stream import decode_value, encode_value

  back = decode_value(json.loads(json.dumps(encode_value(items))))
  assert len(back) == len(items)
  for a, b in zip(back, items, strict=True):
    assert isinstance(a, tuple) and len(a) == len(b)
    for x, y in zip(a, b, strict=True):
      if isinstance(y, np.ndarray):
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)
      else:
        assert x == y


def test_unsaveable_example_is_named():
  stream = data.Shuffle(4)([{"x": object()} for _ in range(10)])
  next(stream)
  with pytest.raises(PipelineStateError, match="cannot save a value of type object") as info:
    stream.get_state()
  assert CATALOGUE["TX7"] in str(info.value)


@pytest.mark.parametrize("boundaries,batch_sizes,match", [
    ([8, 16], [4], "need 3 batch sizes"),
    ([8, 16], [4, 2, 1, 1], "need 3 batch sizes"),
    ([16, 8], [4, 2, 1], "must increase"),
    ([8], [4, 0], "ints >= 1"),
])
def test_bucket_arguments_are_checked(boundaries, batch_sizes, match):
  with pytest.raises(data.BucketError, match=match) as info:
    data.BucketByLength(boundaries, batch_sizes)
  if (boundaries, batch_sizes) == ([8, 16], [4]):
    assert CATALOGUE["TX5"] in str(info.value)


def test_no_bucket_for_longer_examples_is_a_clear_error():
  step = data.BucketByLength([4], [2], length_keys=[0])
  with pytest.raises(data.BucketError, match="length 6 is longer than the last boundary 4"):
    next(step([(np.ones(6), 1)] * 4))


def test_combinator_without_a_source():
  with pytest.raises(TypeError, match="needs an input stream") as info:
    data.Serial(data.Shuffle(4))()
  assert CATALOGUE["TX8"] in str(info.value)


def test_tokenize_fails_at_build_time_on_a_corrupt_model(tmp_path):
  (tmp_path / "bad.model").write_bytes(b"not a model")
  with pytest.raises(data.TokenizerError, match="bad.model"):
    data.Tokenize(vocab_type="sentencepiece", vocab_file=str(tmp_path / "bad.model"))


def test_tokenize_with_a_tokenizer_object_round_trips():
  tok = data.CharTokenizer.train([" ".join(WORDS)])
  stream = data.Serial(lambda _: [("cat dog",)], data.Tokenize(tokenizer=tok))()
  (ids,) = next(stream)
  assert tok.decode(ids) == "cat dog"


def test_parallel_and_synthetic_streams_resume():
  def build():
    copy = data.sequence_copy_inputs(vocab_size=10, batch_size=2, train_length=6,
                                     eval_min_length=2, eval_max_length=4, pad_to_multiple=8)
    add = data.addition_inputs(vocab_size=12, batch_size=2, train_length=8, eval_min_length=4,
                               eval_max_length=8, pad_to_multiple=16)
    return data.Parallel([lambda: copy.train_stream(1), lambda: add.train_stream(1)],
                         counters=(2, 1))()

  stream = build()
  _take(stream, 4)
  state = json.loads(json.dumps(stream.get_state()))
  expected = _take(stream, 6)
  fresh = build()
  fresh.set_state(state)
  _same(_take(fresh, 6), expected)


def test_mlm_pipeline_resumes():
  def build():
    return data.Serial(lambda _: [np.arange(1, 40 + i) for i in range(30)],
                       data.MLM(vocab_size=100, max_length=16), data.Shuffle(5))()

  stream = build()
  _take(stream, 7)
  state = stream.get_state()
  expected = _take(stream, 5)
  fresh = build()
  fresh.set_state(state)
  _same(_take(fresh, 5), expected)


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
  """Only declax_digits (prepared in ~0.1 s), not the session's whole data dir."""
  path = str(tmp_path_factory.mktemp("digits"))
  data.prepare("declax_digits", path)
  return path


def test_tfds_source_resumes(digits_dir):
  data_dir = digits_dir
  def build():
    return data.Serial(data.TFDS("declax_digits", data_dir=data_dir, keys=("image", "label")),
                       data.Shuffle(16), data.Batch(8))()

  stream = build()
  images, labels = next(stream)
  assert images.shape == (8, 8, 8, 1) and labels.shape == (8,)
  state = json.loads(json.dumps(stream.get_state()))
  expected = _take(stream, 3)
  fresh = build()
  fresh.set_state(state)
  _same(_take(fresh, 3), expected)
  eval_labels = [next(data.TFDS("declax_digits", data_dir=data_dir, keys=("label",),
                                train=False)())[0] for _ in range(2)]
  assert all(0 <= int(x) < 10 for x in eval_labels)


def test_tfds_unknown_feature_is_named(digits_dir):
  stream = data.TFDS("declax_digits", data_dir=digits_dir, keys=("text",))()
  with pytest.raises(KeyError, match="no feature \\['text'\\]"):
    next(stream)


@pytest.mark.slow
def test_loop_resumes_a_bucketed_text_stream_exactly(tmp_path):
  import optax

  import declax.layers as tl
  from declax.training import Loop, TrainTask

  sentences = _sentences(2000)

  def task():
    return TrainTask(_text_pipeline(sentences)(), tl.CrossEntropyLoss(), optax.adam(1e-2),
                     n_steps_per_checkpoint=3)

  def model():
    return tl.Serial(tl.Embedding(128, 8), tl.Dense(128), tl.LogSoftmax())

  straight = Loop(model(), task(), log_every=1, seed=3)
  straight.run(6)
  first = Loop(model(), task(), output_dir=tmp_path, log_every=1, seed=3)
  first.run(3)
  first.close()
  resumed = Loop(model(), task(), output_dir=tmp_path, log_every=1, seed=3)
  assert resumed.step == 3
  resumed.run(3)
  resumed.close()
  assert straight.losses == first.losses + resumed.losses


def test_a_list_source_rewinds_past_the_lookback(monkeypatch):
  from declax.data import inputs_stream

  monkeypatch.setattr(inputs_stream, "LOOKBACK", 4)
  stream = data.Serial(lambda _: [(i,) for i in range(20)], data.Dup())()
  start = stream.get_state()
  first = [next(stream) for _ in range(10)]
  stream.set_state(start)
  assert [next(stream) for _ in range(10)] == first
  gen = data.Serial(lambda _: ((i,) for i in range(20)), data.Dup())()
  start = gen.get_state()
  _take(gen, 10)
  with pytest.raises(PipelineStateError, match="cannot move a plain Python iterator back"):
    gen.set_state(start)
