import json

import matplotlib.image
import pytest

from declax.plot import PlotError, main, plot_curves, read_curves


def _write(workdir, records):
  with open(workdir / "metrics.jsonl", "w") as f:
    for r in records:
      f.write(json.dumps(r) + "\n")
    f.write('{"step": 9, "train/lo')  # a line cut by a kill mid-write


def test_read_curves_splits_train_and_eval(tmp_path):
  _write(tmp_path, [{"step": 1, "train/loss": 2.0, "steps_per_sec": 3.0},
                    {"step": 2, "train/loss": "nan", "train/accuracy": 0.5},
                    {"step": 2, "eval/loss": 1.5, "eval/accuracy": 0.6, "sample": "text"}])
  curves = read_curves(tmp_path / "metrics.jsonl")
  assert set(curves) == {"loss", "accuracy"}
  assert curves["loss"]["train"][0] == (1, 2.0) and curves["loss"]["eval"] == [(2, 1.5)]
  assert curves["accuracy"] == {"train": [(2, 0.5)], "eval": [(2, 0.6)]}


def test_plot_curves_writes_a_png(tmp_path, capsys):
  _write(tmp_path, [{"step": s, "train/loss": 1 / s, "eval/loss": 1.2 / s} for s in range(1, 6)])
  assert main([str(tmp_path)]) == 0
  path = capsys.readouterr().out.strip()
  assert path == str(tmp_path / "curves.png")
  image = matplotlib.image.imread(path)
  assert image.shape[0] > 100 and image.shape[1] > 100
  assert plot_curves(tmp_path, tmp_path / "x.png").endswith("x.png")


def test_plot_errors_name_the_file(tmp_path, capsys):
  with pytest.raises(PlotError, match="metrics.jsonl does not exist"):
    plot_curves(tmp_path)
  (tmp_path / "metrics.jsonl").write_text('{"step": 0, "num_params": 5}\n')
  assert main([str(tmp_path)]) == 1
  assert "no train/ or eval/ metrics" in capsys.readouterr().err
