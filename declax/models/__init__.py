"""declax models: ready-made layer stacks built from `declax.layers`."""

from declax.models.mlp import CNN, MLP

__all__ = ["CNN", "MLP"]
from declax.models.resnet import Resnet50, WideResnet
from declax.models.rnn import RNNLM
from declax.models.tabular import MultiEmbeddingModel
from declax.models.transformer import Transformer, TransformerEncoder, TransformerLM

__all__ += ["MultiEmbeddingModel", "RNNLM", "Resnet50", "Transformer", "TransformerEncoder",
            "TransformerLM", "WideResnet"]
from declax.models.reformer import Reformer, ReformerLM, ReformerShortenLM  # noqa: E402

__all__ += ["Reformer", "ReformerLM", "ReformerShortenLM"]

# Trax compatibility: more of Trax's models under Trax's names.
from declax.models.atari_cnn import AtariCnn, AtariCnnBody, FrameStackMLP  # noqa: E402
from declax.models.bert import BERT  # noqa: E402
from declax.models.gru_lm import GRULM  # noqa: E402
from declax.models.neural_gpu import NeuralGPU  # noqa: E402
from declax.models.seq2seq import LSTMSeq2SeqAttn  # noqa: E402

__all__ += ["AtariCnn", "AtariCnnBody", "BERT", "FrameStackMLP", "GRULM", "LSTMSeq2SeqAttn",
            "NeuralGPU"]
