"""Trax's own tests of `trax.data` (inputs_test.py, tf_inputs_test.py), run against declax.data.

Test names and assertions are Trax's. Cases that need a download, TensorFlow or a TFDS dataset
Trax ships (c4, glue, squad, BERT vocabularies, tensor2tensor subwords) are left out or, for
the subword vocabulary, assert declax's clear error instead. The SentencePiece cases use the
model in Trax's testdata directory ($TRAX_TESTDATA) and are skipped where it is absent.
"""

import itertools
import os

import numpy as np
import pytest

from declax import data
from declax.data import inputs_text as tf_inputs

_TESTDATA = os.environ.get("TRAX_TESTDATA", "/work/trax-src/trax/data/testdata")
needs_trax_testdata = pytest.mark.skipif(
    not os.path.exists(os.path.join(_TESTDATA, "sentencepiece.model")),
    reason="Trax's testdata (sentencepiece.model) is not available")


def _spm_path():
  return os.path.join(_TESTDATA, "sentencepiece.model")


# ---------------------------------------------------------------- inputs_test.py
@pytest.mark.parametrize("queue_size", [0, -5], ids=["zero", "negative"])
def test_shuffle_data_raises_error_queue_size(queue_size):
  samples = iter(range(10))
  with pytest.raises(ValueError):
    _ = list(data.shuffle(samples, queue_size))


@pytest.mark.parametrize("queue_size", [1, 2, 20], ids=["one", "two", "twenty"])
def test_shuffle_data_queue_size(queue_size):
  samples = iter(range(100, 200))
  shuffled_stream = data.shuffle(samples, queue_size)
  first_ten = [next(shuffled_stream) for _ in range(10)]
  assert first_ten[0] < 100 + queue_size
  assert first_ten[3] < 103 + queue_size
  assert first_ten[9] < 109 + queue_size
  unshuffled_first_ten = list(range(100, 110))
  if queue_size == 1:
    assert first_ten == unshuffled_first_ten
  if queue_size > 1:
    assert first_ten != unshuffled_first_ten


@pytest.mark.parametrize("queue_size,n_samples", [(100, 1), (100, 99), (100, 100), (100, 101),
                                                  (100, 199)])
def test_shuffle_data_yields_all_samples(queue_size, n_samples):
  samples = iter(range(n_samples))
  shuffled_stream = data.shuffle(samples, queue_size)
  assert len(list(shuffled_stream)) == n_samples


def test_batch_data():
  dataset = ((i, i + 1) for i in range(10))
  batches = data.batch(dataset, 10)
  batch = next(batches)
  assert len(batch) == 2
  assert batch[0].shape == (10,)


def test_batch_data_padding():
  dataset = (([1] * (10 - i), i + 1) for i in range(10))
  batches = data.batch(dataset, 10)
  batch = next(batches)
  assert batch[0].shape == (10, 10)
  assert np.array_equal(batch[0][-1], np.asarray([1] + 9 * [0]))


def test_batch_exception_size():
  dataset = ((i, i + 1) for i in range(10))
  with pytest.raises(ValueError):
    batches = data.batch(dataset, 0)
    next(batches)


def test_serial():
  dataset = lambda _: ((i, i + 1) for i in range(10))  # noqa: E731
  batches = data.Serial(dataset, data.Shuffle(3), data.Batch(10))
  batch = next(batches())
  assert len(batch) == 2
  assert batch[0].shape == (10,)


def test_serial_composes():
  dataset = lambda _: ((i, i + 1) for i in range(10))  # noqa: E731
  serial1 = data.Serial(dataset, data.Shuffle(3))
  batches = data.Serial(serial1, data.Batch(10))
  batch = next(batches())
  assert len(batch) == 2
  assert batch[0].shape == (10,)


def test_count_and_skip():
  dataset = lambda _: ((i, i + 1) for i in range(10))  # noqa: E731
  examples = data.Serial(dataset, data.CountAndSkip("toy_data"))
  ex_generator = examples()
  ex1 = next(ex_generator)
  assert ex1 == (0, 1)
  assert data.inputs.data_counters["toy_data"] == 1
  ex2 = next(ex_generator)
  assert ex2 == (1, 2)
  assert data.inputs.data_counters["toy_data"] == 2
  ex3 = next(examples())  # new generator, will skip
  assert ex3 == (2, 3)
  assert data.inputs.data_counters["toy_data"] == 3
  data.inputs.data_counters["toy_data"] = 0  # reset
  ex4 = next(examples())  # new generator, was reset
  assert ex4 == (0, 1)
  assert data.inputs.data_counters["toy_data"] == 1


def _take(generator, n):
  return [next(generator) for _ in range(n)]


def test_parallel():
  dataset1 = lambda: (i for i in range(10))  # noqa: E731
  dataset2 = lambda: (i for i in range(10, 20))  # noqa: E731
  generator = data.Parallel([dataset1, dataset2])()
  assert _take(generator, 6) == [0, 10, 1, 11, 2, 12]


def test_parallel_with_gen_not_none():
  dataset1 = lambda _: (i for i in range(10))  # noqa: E731
  dataset2 = lambda _: (i for i in range(10, 20))  # noqa: E731
  parallel = data.Parallel([dataset1, dataset2])

  def test_generator():
    yield 0

  generator = parallel(gen=test_generator)
  assert _take(generator, 6) == [0, 10, 1, 11, 2, 12]


def test_parallel_with_weights():
  dataset1 = lambda: (i for i in range(10))  # noqa: E731
  dataset2 = lambda: (i for i in range(10, 20))  # noqa: E731
  generator = data.Parallel([dataset1, dataset2], counters=(2, 1))()
  assert _take(generator, 10) == [0, 10, 1, 11, 2, 3, 12, 4, 5, 13]


def test_parallel_with_weights_and_minimum():
  dataset1 = lambda: (i for i in range(10))  # noqa: E731
  dataset2 = lambda: (i for i in range(10, 110))  # noqa: E731
  generator = data.Parallel([dataset1, dataset2], counters=(10, 100),
                            reweight_by_minimum=True)()
  assert _take(generator, 23) == [0, *range(10, 20), 1, *range(20, 30), 2]


def test_parallel_with_gradual_reweighting():
  dataset1 = lambda: (i for i in itertools.cycle(range(1)))  # noqa: E731
  dataset2 = lambda: (i for i in itertools.cycle(range(10, 30)))  # noqa: E731
  dataset3 = lambda: (i for i in itertools.cycle(range(30, 70)))  # noqa: E731
  generator = data.Parallel([dataset2, dataset1, dataset3], counters=(20, 1, 40),
                            gradually_reweight=True)()
  for _ in range(3):
    assert next(generator) == 0
    for i in range(20):
      assert next(generator) == 10 + i
      assert next(generator) == 30 + 2 * i
      assert next(generator) == 30 + 2 * i + 1


def test_parallel_with_gradual_reweighting_remainders():
  dataset1 = lambda: (i for i in itertools.cycle(range(1)))  # noqa: E731
  dataset2 = lambda: (i for i in itertools.cycle(range(10, 30)))  # noqa: E731
  dataset3 = lambda: (i for i in itertools.cycle(range(30, 80)))  # noqa: E731
  generator = data.Parallel([dataset2, dataset1, dataset3], counters=(20, 1, 50),
                            gradually_reweight=True, use_remainders=True)()
  for _ in range(3):
    assert next(generator) == 0
    for i in range(20):
      assert next(generator) == 10 + i
      assert next(generator) == 30 + 2 * i
      assert next(generator) == 30 + 2 * i + 1
    for i in range(10):
      assert next(generator) == 70 + i


def test_parallel_with_gradual_reweighting_remainders_big():
  dataset1 = lambda: (i for i in itertools.cycle(range(1)))  # noqa: E731
  dataset2 = lambda: (i for i in itertools.cycle(range(10, 30)))  # noqa: E731
  dataset3 = lambda: (i for i in itertools.cycle(range(30, 80)))  # noqa: E731
  dataset4 = lambda: (i for i in itertools.cycle(range(100, 220)))  # noqa: E731
  generator = data.Parallel([dataset2, dataset1, dataset4, dataset3],
                            counters=(20, 1, 120, 50), gradually_reweight=True,
                            use_remainders=True)()
  for _ in range(3):
    assert next(generator) == 0
    for i in range(20):
      assert next(generator) == 10 + i
      for j in range(2):
        assert next(generator) == 30 + 2 * i + j
        for k in range(2):
          assert next(generator) == 100 + 2 * 2 * i + 2 * j + k
    for i in range(10):
      assert next(generator) == 70 + i
    for i in range(40):
      assert next(generator) == 180 + i


def test_parallel_with_weights_three_datasets():
  dataset1 = lambda: (i for i in range(10))  # noqa: E731
  dataset2 = lambda: (i for i in range(10, 20))  # noqa: E731
  dataset3 = lambda: (i for i in range(20, 30))  # noqa: E731
  generator = data.Parallel([dataset1, dataset2, dataset3], counters=(2, 1, 3))()
  assert _take(generator, 13) == [0, 10, 20, 1, 21, 22, 2, 11, 23, 3, 24, 25, 4]


def test_stack_parallel():
  dataset1 = lambda: (i for i in range(10))  # noqa: E731
  dataset2 = lambda: (i for i in range(10, 20))  # noqa: E731
  dataset3 = lambda: (i for i in range(20, 30))  # noqa: E731
  parallel_lev0 = data.Parallel([dataset1, dataset2])
  generator = data.Parallel([parallel_lev0, dataset3])()
  assert _take(generator, 11) == [0, 20, 10, 21, 1, 22, 11, 23, 2, 24, 12]


def test_parallel_with_zero_counters():
  dataset1 = lambda: (i for i in range(10))  # noqa: E731
  dataset2 = lambda: (i for i in range(10, 20))  # noqa: E731
  dataset3 = lambda: (i for i in range(20, 30))  # noqa: E731
  generator = data.Parallel([dataset1, dataset2, dataset3], counters=[1, 0, 1])()
  assert _take(generator, 8) == [0, 20, 1, 21, 2, 22, 3, 23]


def test_serial_with_python():
  dataset = lambda _: ((i, i + 1) for i in range(10))  # noqa: E731
  batches = data.Serial(
      dataset,
      lambda g: map(lambda x: (x[0], x[1] + 1), g),
      lambda g: filter(lambda x: x[0] % 2 == 1, g),
      data.Batch(2))
  xs, ys = next(batches())
  assert xs[0] == 1 and ys[0] == 3
  assert xs[1] == 3 and ys[1] == 5


def test_pad_to_max_dims():
  padded1 = data.inputs.pad_to_max_dims([np.zeros((3, 10)), np.ones((3, 10))])
  assert padded1.shape == (2, 3, 10)
  padded2 = data.inputs.pad_to_max_dims([np.zeros((2, 10)), np.ones((3, 9))])
  assert padded2.shape == (2, 3, 10)
  padded3 = data.inputs.pad_to_max_dims([np.zeros((8, 10)), np.ones((8, 9))], 12)
  assert padded3.shape == (2, 12, 12)
  padded4 = data.inputs.pad_to_max_dims([np.zeros((2, 10)), np.ones((3, 9))], 12)
  assert padded4.shape == (2, 4, 12)


def test_pad_to_length():
  tensors1 = [(np.zeros(5), np.ones(3))]
  fn1 = data.inputs.PadToLength(len_map={0: 10, 1: 11}, pad_value={0: 0, 1: 1})
  padded1 = next(fn1(tensors1))
  assert padded1[0].shape == (10,)
  assert padded1[1].shape == (11,)
  tensors2 = [(np.zeros(15), np.ones(20))]
  fn2 = data.inputs.PadToLength(len_map={0: 10, 1: 10}, pad_value={0: 0, 1: 1}, multiple=True)
  padded2 = next(fn2(tensors2))
  assert padded2[0].shape == (20,)
  assert padded2[1].shape == (20,)


def test_concatenate_lm_input():
  tensors1 = [(np.zeros(5), np.ones(3))]
  lm_input_1 = next(data.inputs_lm.ConcatenateToLMInput(pad_to_length=10)(tensors1))
  assert lm_input_1[0].shape == (10,)
  assert lm_input_1[1].shape == (10,)
  assert lm_input_1[2].shape == (10,)
  assert lm_input_1[2].all() == np.array([[0., 0., 0., 0., 0., 1., 1., 1., 0., 0.]]).all()
  tensors2 = [(np.zeros(5), np.ones(3))]
  lm_input_2 = next(data.inputs_lm.ConcatenateToLMInput()(tensors2))
  assert lm_input_2[0].shape == (8,)
  assert lm_input_2[1].shape == (8,)
  assert lm_input_2[2].shape == (8,)
  assert lm_input_2[2].all() == np.array([[0., 0., 0., 0., 0., 1., 1., 1.]]).all()


def _zeros_ones_stream():
  while True:
    yield (np.zeros((1, 5)), np.ones((1, 5)))


def test_truncate_to_length_no_arg():
  y0, y1 = next(data.inputs.TruncateToLength()(_zeros_ones_stream()))
  assert y0.shape == (1, 5)
  assert y1.shape == (1, 5)


@pytest.mark.parametrize("len_map,out_shapes", [
    (None, ((1, 5), (1, 5))),
    ({0: (1, 77), 1: (1, 88)}, ((1, 5), (1, 5))),
    ({0: (1, 3), 1: (1, 2)}, ((1, 3), (1, 2))),
], ids=["none", "large_values", "small_values"])
def test_truncate_to_length_len_map(len_map, out_shapes):
  y0, y1 = next(data.inputs.TruncateToLength(len_map=len_map)(_zeros_ones_stream()))
  assert y0.shape == out_shapes[0]
  assert y1.shape == out_shapes[1]


def test_truncate_to_length_questionable_behavior():
  x = np.arange(21).reshape((1, 21, 1))

  def data_stream():
    while True:
      yield x

  (y,) = next(data.inputs.TruncateToLength(len_map={0: (1, 4, 6)})(data_stream()))
  assert y.shape == (1, 4, 6)
  assert y[0, 3, 1] == 19
  assert y[0, 3, 2] == 20
  assert y[0, 3, 3] == 0
  assert y[0, 3, 4] == 1
  assert y[0, 3, 5] == 2


def test_filter_empty_examples():
  tensors1 = [(np.zeros((0,)), np.ones((1, 5))), (np.zeros((1, 5)), np.ones((1, 5)))]
  filtered1 = next(data.inputs.FilterEmptyExamples()(tensors1))
  assert filtered1[0].shape == (1, 5)
  assert filtered1[1].shape == (1, 5)
  filtered2 = next(data.inputs.FilterEmptyExamples(axes=[1])(tensors1))
  assert filtered2[0].shape == (0,)
  assert filtered2[1].shape == (1, 5)


def test_append_value():
  tensors1 = [(np.zeros((1, 5)), np.ones((1, 5)))]
  unmodified = next(data.inputs.AppendValue()(tensors1))
  assert unmodified[0].shape == (1, 5)
  assert unmodified[1].shape == (1, 5)
  appended = next(data.inputs.AppendValue({0: [[5]], 1: [[4]]})(tensors1))
  assert appended[0].shape == (1, 6)
  assert appended[0].all() == np.array([[0., 0., 0., 0., 0., 5.]]).all()
  assert appended[1].shape == (1, 6)
  assert appended[1].all() == np.array([[1., 1., 1., 1., 1., 4.]]).all()


def test_pad_to_max_dims_boundary_list():
  tensors = [np.zeros((1, 15, 31)), np.ones((2, 10, 35)), np.ones((4, 2, 3))]
  padded_tensors = data.inputs.pad_to_max_dims(tensors, boundary=(None, 15, 20))
  assert padded_tensors.shape == (3, 4, 15, 40)


def test_pad_to_max_dims_strict_pad_on_len():
  tensors = [np.ones((15,)), np.ones((12,)), np.ones((14,))]
  padded_tensors = data.inputs.pad_to_max_dims(tensors, boundary=10, strict_pad_on_len=True)
  assert padded_tensors.shape == (3, 20)


def test_bucket_by_length():
  def fake_generator(length, num_examples=1):
    for _ in range(num_examples):
      yield (np.ones((length,)), np.ones((length,)))

  def length_function(example):
    return max(example[0].shape[0], example[1].shape[0])

  batches = list(data.bucket_by_length(fake_generator(5, 6), length_function, [20], [2],
                                       strict_pad_on_len=True))
  assert len(batches) == 3
  assert isinstance(batches[0], tuple)
  assert len(batches[0]) == 2
  assert batches[0][0].shape == (2, 20)
  assert batches[0][1].shape == (2, 20)


@pytest.mark.parametrize("encdec", [True, False], ids=["encdec_on", "encdec_off"])
def test_addition_inputs_exceptions(encdec):
  vocab_size, batch_size, seq_length = 5, 256, 64
  with pytest.raises(ValueError):
    inputs = data.addition_inputs(
        vocab_size=vocab_size, batch_size=batch_size, train_length=2, eval_min_length=1,
        eval_max_length=seq_length, pad_to_multiple=seq_length, encdec=encdec)
    train_stream = inputs.train_stream(n_devices=1)
    for _ in range(10):
      next(train_stream)
  with pytest.raises(ValueError):
    inputs = data.addition_inputs(
        vocab_size=vocab_size, batch_size=batch_size, train_length=seq_length,
        eval_min_length=1, eval_max_length=seq_length, pad_to_multiple=seq_length, encdec=True)
    eval_stream = inputs.eval_stream(n_devices=1)
    for _ in range(10):
      next(eval_stream)


def test_addition_inputs_constraints():
  vocab_size, batch_size, seq_length = 5, 256, 64
  inputs = data.addition_inputs(
      vocab_size=vocab_size, batch_size=batch_size, train_length=seq_length,
      eval_min_length=seq_length, eval_max_length=seq_length, pad_to_multiple=seq_length,
      encdec=True)
  for stream in (inputs.train_stream(n_devices=1), inputs.eval_stream(n_devices=1)):
    for _ in range(10):
      x, y, weights = next(stream)
      assert x.shape[1] == seq_length
      assert y.shape[1] == seq_length
      assert weights.shape[1] == seq_length


def _get_span_lengths(x):
  span_lengths, curr_len = [], 0
  for i in range(1, len(x)):
    if x[i] == 0 and x[i - 1] == 1:
      span_lengths.append(curr_len)
      curr_len = 0
    elif (x[i] == 1 and x[i - 1] == 1) or (x[i] == 1 and x[i - 1] == 0):
      curr_len += 1
  if curr_len != 0:
    span_lengths.append(curr_len)
  return span_lengths


def test_random_spans_noise_mask():
  length, noise_density, mean_noise_span_length = 100, 0.15, 3.0
  for seed in np.random.randint(0, 100, (5, 2)):
    is_noise = data.random_spans_noise_mask(length, noise_density, mean_noise_span_length,
                                            seed1=seed[0], seed2=seed[1])
    is_noise = is_noise.astype(np.int32)
    assert np.sum(is_noise) == noise_density * length
    actual_span_lengths = _get_span_lengths(is_noise)
    assert mean_noise_span_length == sum(actual_span_lengths) / len(actual_span_lengths)


def test_prefix_lm_last_output_batch_is_short():
  examples = list(data.PrefixLM(input_length=2, output_length=3)([[1, 2, 3, 4, 5, 6, 7, 8]]))
  assert ([1, 2], [3, 4, 5]) == examples[0]
  assert ([6, 7], [8]) == examples[1]
  assert len(examples) == 2


def test_prefix_lm_last_input_batch_is_short():
  examples = list(data.PrefixLM(input_length=2, output_length=3)([[1, 2, 3, 4, 5, 6]]))
  assert ([1, 2], [3, 4, 5]) == examples[0]
  assert len(examples) == 1


def test_prefix_lm_last_input_batch_exists_but_no_output():
  examples = list(data.PrefixLM(input_length=2, output_length=3)([[1, 2, 3, 4, 5, 6, 7]]))
  assert ([1, 2], [3, 4, 5]) == examples[0]
  assert len(examples) == 1


def test_unbatch():
  batched_inputs = [
      (np.arange(3 * 2).reshape(3, -1), np.arange(3 * 3).reshape(3, -1),
       np.arange(3 * 4).reshape(3, -1)),
      (np.arange(4 * 2).reshape(4, -1), np.arange(4 * 3).reshape(4, -1),
       np.arange(4 * 4).reshape(4, -1)),
  ]
  assert len(list(data.UnBatch()(batched_inputs))) == 3 + 4


def test_sine_shape():
  inputs = data.sine_inputs(batch_size=3, length=5)
  train_batch = next(inputs.train_stream(n_devices=1))
  eval_batch = next(inputs.eval_stream(n_devices=1))
  assert len(train_batch) == 4
  assert len(eval_batch) == 4
  for x, y in zip(train_batch, eval_batch, strict=True):
    assert x.shape == (3, 5)
    assert y.shape == (3, 5)


# ---------------------------------------------------------------- tf_inputs_test.py
def test_convert_to_unicode():
  def dataset1():
    yield (b"Audentes fortuna iuvat.", b"Fortune favors the bold.")

  def dataset2():
    yield (b"\x81aabb", b"Value")

  convert_output1 = next(data.ConvertToUnicode(keys=[0])(dataset1()))
  assert convert_output1[0] == "Audentes fortuna iuvat."
  assert convert_output1[1] == b"Fortune favors the bold."
  assert isinstance(convert_output1[0], str)
  assert isinstance(convert_output1[1], bytes)
  convert_output2 = next(data.ConvertToUnicode(keys=[0])(dataset2()))
  assert convert_output2[0] == "aabb"
  assert isinstance(convert_output2[0], str)


def _cat():
  yield "I have a cat."


def test_tokenize_detokenize():
  tok_char = list(tf_inputs.tokenize(_cat(), vocab_type="char"))
  np.testing.assert_array_equal(tok_char[0], np.array([ord(c) for c in "I have a cat."]))
  assert tf_inputs.detokenize(tok_char[0], vocab_type="char") == "I have a cat."
  # Trax's subword vocabulary (tensor2tensor) needs TensorFlow: declax says so.
  with pytest.raises(tf_inputs.TokenizerError, match="TensorFlow"):
    list(tf_inputs.tokenize(_cat(), vocab_type="subword", vocab_dir=_TESTDATA,
                            vocab_file="en_8k.subword"))


@needs_trax_testdata
def test_tokenize_detokenize_sentencepiece():
  tok_spc = list(tf_inputs.tokenize(_cat(), vocab_type="sentencepiece", vocab_dir=_TESTDATA,
                                    vocab_file="sentencepiece.model"))
  np.testing.assert_array_equal(tok_spc[0], np.array([27, 43, 3, 9, 1712, 5]))
  detok = tf_inputs.detokenize(list(tok_spc[0]), vocab_type="sentencepiece",
                               vocab_dir=_TESTDATA, vocab_file="sentencepiece.model")
  assert detok == "I have a cat."


def test_tokenize_keys_reservedids():
  def dataset():
    yield ("Cat.", "Dog.")

  tok_char1 = list(tf_inputs.tokenize(dataset(), vocab_type="char", n_reserved_ids=5))
  np.testing.assert_array_equal(tok_char1[0][0], np.array([ord(c) + 5 for c in "Cat."]))
  np.testing.assert_array_equal(tok_char1[0][1], np.array([ord(c) + 5 for c in "Dog."]))
  tok_char2 = list(tf_inputs.tokenize(dataset(), keys=[0], vocab_type="char", n_reserved_ids=2))
  np.testing.assert_array_equal(tok_char2[0][0], np.array([ord(c) + 2 for c in "Cat."]))
  assert tok_char2[0][1] == "Dog."


def test_tokenize_dict():
  def dataset():
    yield {"a": "Cat.", "b": "Dog."}

  tok_char1 = list(tf_inputs.tokenize(dataset(), vocab_type="char"))
  np.testing.assert_array_equal(tok_char1[0]["a"], np.array([ord(c) for c in "Cat."]))
  np.testing.assert_array_equal(tok_char1[0]["b"], np.array([ord(c) for c in "Dog."]))
  tok_char2 = list(tf_inputs.tokenize(dataset(), keys=["a"], vocab_type="char"))
  np.testing.assert_array_equal(tok_char2[0]["a"], np.array([ord(c) for c in "Cat."]))
  assert tok_char2[0]["b"] == "Dog."


def test_vocab_size():
  assert tf_inputs.vocab_size(vocab_type="char", n_reserved_ids=11) == 256 + 11


@needs_trax_testdata
def test_vocab_size_sentencepiece():
  spc_size = tf_inputs.vocab_size(vocab_type="sentencepiece", vocab_dir=_TESTDATA,
                                  vocab_file="sentencepiece.model")
  assert spc_size == 32000


@needs_trax_testdata
def test_sentencepiece_tokenize():
  examples = list(tf_inputs.sentencepiece_tokenize(_cat(), _spm_path()))
  assert list(examples[0]) == [27, 43, 3, 9, 1712, 5]
  # The stream step gives the same ids.
  assert list(next(data.SentencePieceTokenize(_spm_path())(_cat()))) == [27, 43, 3, 9, 1712, 5]
