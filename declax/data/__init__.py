"""declax.data: offline TFDS builders, a dataset registry and grain input pipelines (no TensorFlow).

>>> from declax import data
>>> train = data.make_pipeline('declax_digits', 'train', batch_size=128)
>>> inputs, targets = next(train)        # float32 (128, 8, 8, 1), int32 (128,)
>>> state = train.get_state()            # JSON: save with the checkpoint, restore with set_state
"""

from declax.data.builders import DeclaxDigits, DeclaxFashionMnist, DeclaxPysrc, PysrcConfig
from declax.data.data_dir import resolve_data_dir
from declax.data.inputs_text import detokenize, get_vocab, tokenize, vocab_size
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
    "ByteTokenizer",
    "CharTokenizer",
    "DatasetSpec",
    "DatasetUnavailableError",
    "DeclaxDigits",
    "DeclaxFashionMnist",
    "DeclaxPysrc",
    "Pipeline",
    "PysrcConfig",
    "SentencePieceTokenizer",
    "Tokenizer",
    "TokenizerError",
    "clear_cache",
    "detokenize",
    "get_builder",
    "get_dataset_spec",
    "get_vocab",
    "load_split_arrays",
    "local_dataset_names",
    "make_batch_fn",
    "make_pipeline",
    "prepare",
    "register_dataset",
    "registered_names",
    "resolve_data_dir",
    "tokenize",
    "unresolvable_hosts",
    "vocab_size",
]
