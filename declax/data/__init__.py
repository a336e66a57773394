"""declax.data: offline TFDS builders, a dataset registry and grain input pipelines (no TensorFlow),
tokenizers, and Trax's stream combinators (`Serial`, `Tokenize`, `Shuffle`, `BucketByLength`, ...).

>>> from declax import data
>>> train = data.make_pipeline('declax_digits', 'train', batch_size=128)
>>> inputs, targets = next(train)        # float32 (128, 8, 8, 1), int32 (128,)
>>> state = train.get_state()            # JSON: save with the checkpoint, restore with set_state
>>> stream = data.Serial(data.TFDS('declax_digits', keys=('image', 'label')), data.Batch(32))()
>>> images, labels = next(stream)        # a Stream saves its position the same way
"""

from declax.data.builders import DeclaxDigits, DeclaxFashionMnist, DeclaxPysrc, PysrcConfig
from declax.data.data_dir import resolve_data_dir
from declax.data.inputs import (
    AddLossWeights,
    AppendValue,
    Batch,
    BucketByLength,
    BucketError,
    CastTo,
    CountAndSkip,
    Dup,
    FilterByLength,
    FilterEmptyExamples,
    Log,
    PadToLength,
    Parallel,
    Serial,
    Shuffle,
    TruncateToLength,
    UnBatch,
    add_loss_weights,
    batch,
    bucket_by_length,
    count_and_skip,
    pad_to_max_dims,
    shuffle,
)
from declax.data.inputs_lm import (
    MLM,
    ConcatenateToLMInput,
    PrefixLM,
    consume_noise_mask,
    generate_random_noise_mask,
    generate_sequential_chunks,
    random_spans_noise_mask,
)
from declax.data.inputs_sources import (
    TFDS,
    Inputs,
    addition_input_stream,
    addition_inputs,
    sequence_copy_inputs,
    simple_sequence_copy_inputs,
    sine_inputs,
)
from declax.data.inputs_stream import PipelineStateError, Stream
from declax.data.inputs_text import (
    ConvertToUnicode,
    SentencePieceTokenize,
    Tokenize,
    detokenize,
    get_vocab,
    sentencepiece_tokenize,
    tokenize,
    vocab_size,
)
from declax.data.offline import DatasetUnavailableError, unresolvable_hosts
from declax.data.pipeline import Pipeline, load_split_arrays, make_pipeline
from declax.data.preprocess import make_batch_fn
from declax.data.registry import (
    DatasetSpec,
    get_dataset_spec,
    local_dataset_names,
    register_dataset,
    registered_names,
)
from declax.data.sources import clear_cache, get_builder, prepare
from declax.data.tokenizers import (
    ByteTokenizer,
    CharTokenizer,
    SentencePieceTokenizer,
    Tokenizer,
    TokenizerError,
)

__all__ = [
    "add_loss_weights",
    "addition_input_stream",
    "addition_inputs",
    "AddLossWeights",
    "AppendValue",
    "Batch",
    "batch",
    "bucket_by_length",
    "BucketByLength",
    "BucketError",
    "ByteTokenizer",
    "CastTo",
    "CharTokenizer",
    "clear_cache",
    "ConcatenateToLMInput",
    "consume_noise_mask",
    "ConvertToUnicode",
    "count_and_skip",
    "CountAndSkip",
    "DatasetSpec",
    "DatasetUnavailableError",
    "DeclaxDigits",
    "DeclaxFashionMnist",
    "DeclaxPysrc",
    "detokenize",
    "Dup",
    "FilterByLength",
    "FilterEmptyExamples",
    "generate_random_noise_mask",
    "generate_sequential_chunks",
    "get_builder",
    "get_dataset_spec",
    "get_vocab",
    "Inputs",
    "load_split_arrays",
    "local_dataset_names",
    "Log",
    "make_batch_fn",
    "make_pipeline",
    "MLM",
    "pad_to_max_dims",
    "PadToLength",
    "Parallel",
    "Pipeline",
    "PipelineStateError",
    "PrefixLM",
    "prepare",
    "PysrcConfig",
    "random_spans_noise_mask",
    "register_dataset",
    "registered_names",
    "resolve_data_dir",
    "sentencepiece_tokenize",
    "SentencePieceTokenize",
    "Stream",
    "SentencePieceTokenizer",
    "sequence_copy_inputs",
    "Serial",
    "Shuffle",
    "shuffle",
    "simple_sequence_copy_inputs",
    "sine_inputs",
    "TFDS",
    "Tokenize",
    "tokenize",
    "Tokenizer",
    "TokenizerError",
    "TruncateToLength",
    "UnBatch",
    "unresolvable_hosts",
    "vocab_size",
]
