"""declax: Trax's combinator style of writing models, on Flax Linen, Optax and Orbax."""

from declax.errors import DeclaxError
from declax.layers.base import LayerError, summary

__all__ = ["DeclaxError", "LayerError", "summary"]
__version__ = "0.1.0"
