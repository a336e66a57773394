"""declax's offline TFDS builders. Importing this module registers them with TFDS."""

from declax.data.builders.digits import DeclaxDigits
from declax.data.builders.fashion_mnist import DeclaxFashionMnist
from declax.data.builders.gettext import DeclaxGettextTranslations, GettextConfig
from declax.data.builders.pysrc import DeclaxPysrc, PysrcConfig

__all__ = ["DeclaxDigits", "DeclaxFashionMnist", "DeclaxGettextTranslations", "DeclaxPysrc",
           "GettextConfig", "PysrcConfig"]
