"""Train what a config describes: a thin wrapper around `declax.cli` (also `declax-train`).

    python scripts/train.py --config configs/digits_mlp.py --workdir /tmp/declax/digits_mlp \
        [--config.train.steps=300 ...]
"""

from declax.cli import main

if __name__ == "__main__":
  main()
