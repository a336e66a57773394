"""Turning a dict of stacked examples into the batch tuple a Trax-style loop consumes.

A batch is `(inputs, targets)` or `(inputs, targets, weights)` of numpy arrays:

- `'image'`: inputs float32 NHWC, scaled to [0, 1] (`normalize='unit'`), standardised with the
  spec's mean/std (`'standardize'`) or left as stored (`'none'`); targets int32 class ids.
- `'lm'`: from windows `w` of `seq_len + 1` tokens (0 = padding):
  `lm_format='trax'` gives `inputs == targets == w[:, :-1]` for models that shift right inside
  (Trax's `TransformerLM`); `'shifted'` gives `inputs = w[:, :-1]`, `targets = w[:, 1:]`.
  Weights are `targets != 0` as float32, so padding does not count.
- `'supervised'`: the input and target features as stored (integer targets cast to int32).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from declax.data.registry import DatasetSpec

Batch = tuple[np.ndarray, ...]
NORMALIZE = ("unit", "standardize", "none")
LM_FORMATS = ("trax", "shifted")


def _int32(x: np.ndarray) -> np.ndarray:
    return x.astype(np.int32) if np.issubdtype(x.dtype, np.integer) else x


def check_options(*, normalize: str = "unit", lm_format: str = "trax") -> None:
    """Raises `ValueError` for an unknown `normalize` or `lm_format`."""
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
    if lm_format not in LM_FORMATS:
        raise ValueError(f"lm_format must be one of {LM_FORMATS}, got {lm_format!r}")


def make_batch_fn(
    spec: DatasetSpec,
    *,
    normalize: str = "unit",
    lm_format: str = "trax",
    add_weights: bool | None = None,
) -> Callable[[dict[str, np.ndarray]], Batch]:
    """Returns `f(examples) -> (inputs, targets[, weights])` for `spec.kind`.

    `add_weights` (default: only for `'lm'`) appends float32 weights: ones for classification,
    the padding mask for language modelling.

    >>> f = make_batch_fn(get_dataset_spec('declax_digits'))
    >>> x, y = f({'image': np.full((2, 8, 8, 1), 16, np.uint8), 'label': np.array([3, 4])})
    >>> float(x.max()), y.dtype
    (1.0, dtype('int32'))
    """
    check_options(normalize=normalize, lm_format=lm_format)
    if normalize == "standardize" and spec.kind == "image" and None in (spec.mean, spec.std):
        raise ValueError(
            f"normalize='standardize' needs pixel mean/std, and DatasetSpec {spec.name!r} has "
            "none: register it with DatasetSpec(..., mean=..., std=...)"
        )
    weights = add_weights
    if weights is None:
        weights = spec.kind == "lm" or spec.weights_key is not None
    x_key, y_key = spec.input_key, spec.target_key

    def image(ex: dict[str, np.ndarray]) -> Batch:
        x = ex[x_key]
        if normalize != "none":
            x = x.astype(np.float32) * np.float32(1.0 / spec.max_value)
        if normalize == "standardize":
            x = (x - np.float32(spec.mean)) * np.float32(1.0 / spec.std)
        y = _int32(np.asarray(ex[y_key]))
        return (x, y, np.ones(y.shape, np.float32)) if weights else (x, y)

    def lm(ex: dict[str, np.ndarray]) -> Batch:
        w = ex[x_key].astype(np.int32)
        x = w[:, :-1]
        y = x if lm_format == "trax" else w[:, 1:]
        return (x, y, (y != 0).astype(np.float32)) if weights else (x, y)

    def supervised(ex: dict[str, np.ndarray]) -> Batch:
        keys = x_key if isinstance(x_key, tuple) else (x_key,)  # several inputs: one per key
        as_jax = lambda a: _int32(a) if np.issubdtype(a.dtype, np.integer) else a  # no int64
        xs = tuple(as_jax(np.asarray(ex[k])) for k in keys)
        y = as_jax(np.asarray(ex[y_key]))
        if spec.weights_key is not None and weights:
            return (*xs, y, np.asarray(ex[spec.weights_key], np.float32))
        return (*xs, y, np.ones(y.shape, np.float32)) if weights else (*xs, y)

    return {"image": image, "lm": lm, "supervised": supervised}[spec.kind]
