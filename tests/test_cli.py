"""scripts/train.py and `declax-train`: a short run, config errors, SIGTERM -> save and exit 0."""

import json
import os
import signal
import subprocess
import sys
import time
from importlib import metadata

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = [sys.executable, os.path.join(ROOT, "scripts", "train.py")]
SMALL = ["--config", os.path.join(ROOT, "configs", "digits_mlp.py"),
         "--config.model.layer_widths=(16,)", "--config.data.eval_batch_size=360"]


def _env():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
  return env


def _run(args, timeout=300):
  return subprocess.run(TRAIN + args, capture_output=True, text=True, timeout=timeout,
                        env=_env(), cwd=ROOT)


@pytest.mark.slow
def test_short_run_writes_config_metrics_and_checkpoint(tmp_path):
  result = _run([*SMALL, "--workdir", str(tmp_path), "--config.train.steps=6",
                 "--config.train.log_every=3"])
  assert result.returncode == 0, result.stderr[-3000:]
  assert "step 6/6 | loss" in result.stdout and "eval/accuracy" in result.stdout
  config = json.load(open(tmp_path / "config.json"))
  assert config["train"]["steps"] == 6 and config["model"]["layer_widths"] == [16]
  assert os.listdir(tmp_path / "checkpoints") == ["6"]
  steps = [json.loads(line)["step"] for line in open(tmp_path / "metrics.jsonl")]
  assert 3 in steps and 6 in steps


@pytest.mark.parametrize("flag, hint", [
    ("--config.train.stepz=3", "did you mean --config.train.steps?"),
    ("--config.optimiser.name=sgd", "did you mean --config.optimizer.name?"),
])
@pytest.mark.slow
def test_unknown_config_key_suggests_the_close_match(tmp_path, flag, hint):
  result = _run([*SMALL, "--workdir", str(tmp_path), flag], timeout=120)
  assert result.returncode == 1
  assert hint in result.stderr and "Traceback" not in result.stderr


def test_missing_workdir_is_a_usage_error():
  result = _run(SMALL, timeout=120)
  assert result.returncode == 1 and "--workdir" in result.stderr


@pytest.mark.slow
def test_sigterm_saves_at_the_current_step_and_exits_0(tmp_path):
  args = [*SMALL, "--workdir", str(tmp_path), "--config.train.steps=1000000",
          "--config.train.log_every=1", "--config.train.checkpoint_every=1000000"]
  proc = subprocess.Popen(TRAIN + args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True, env=_env(), cwd=ROOT)
  deadline = time.time() + 240
  for line in proc.stdout:  # wait until training is under way
    if line.startswith("step 5/"):
      break
    assert time.time() < deadline, "training did not start"
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0
  preempted = [line for line in out.splitlines() if line.startswith("Preempted at step")]
  assert preempted, out[-2000:]
  step = int(preempted[0].split()[3].rstrip(":"))
  assert 5 <= step < 1000000
  assert os.listdir(tmp_path / "checkpoints") == [str(step)]


def test_console_script_points_at_cli_main():
  scripts = {e.name: e.value for e in metadata.entry_points(group="console_scripts")}
  assert scripts.get("declax-train") == "declax.cli:main"
  from declax.cli import main

  assert callable(main)


def test_declax_errors_are_recognised_by_type(capsys):
  from declax import cli
  from declax.training import ConfigError

  cli._report_failure(ConfigError("config.train.steps is missing (required)"))
  err = capsys.readouterr().err
  assert err.startswith("declax-train: error: ConfigError: config.train.steps is missing")
  assert "Traceback" not in err
  cli._report_failure(ValueError("raised by someone else"))
  assert "stopped by an unexpected ValueError" in capsys.readouterr().err


def test_help_lists_declax_flags_with_their_help():
  result = _run(["--help"], timeout=120)
  assert result.returncode == 0
  for flag in ("--config:", "--workdir:", "--[no]show_config:", "--[no]distributed:", "--helpfull"):
    assert flag in result.stdout
  assert "PATH:VARIANT" in result.stdout and "Try --helpfull" not in result.stdout


def test_show_config_prints_keys_values_defaults_and_help_without_a_workdir():
  result = _run([*SMALL, "--config.train.steps=7", "--show_config"], timeout=120)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  steps = next(line for line in lines if line.strip().startswith("steps = 7"))
  assert "(default None)" in steps and "# total training steps" in steps
  assert any("eval_split = 'test'" in line and "None: no evaluation" in line for line in lines)


@pytest.mark.slow
def test_config_variant_is_passed_to_get_config():
  result = _run(["--config", os.path.join(ROOT, "configs", "pysrc_lm.py") + ":small",
                 "--show_config"], timeout=120)
  assert result.returncode == 0, result.stderr
  assert "  n_layers = 1" in result.stdout and "  steps = 200" in result.stdout


@pytest.mark.slow
def test_log_dir_captures_the_console_lines(tmp_path):
  logs = tmp_path / "logs"
  logs.mkdir()
  result = _run([*SMALL, "--workdir", str(tmp_path / "run"), "--config.train.steps=2",
                 "--config.train.log_every=1", "--log_dir", str(logs)])
  assert result.returncode == 0, result.stderr[-2000:]
  assert "step 2/2 | loss" in result.stdout and result.stdout.count("step 2/2 | loss") == 1
  text = "".join(p.read_text() for p in logs.iterdir() if p.is_file())
  assert "step 2/2 | loss" in text and "hparams:" in text


def test_preparing_a_local_dataset_prints_no_download_line(tmp_path, capsys):
  from declax.data.sources import prepare

  _, builder = prepare("declax_digits", data_dir=str(tmp_path))
  assert builder.is_prepared()
  assert "Downloading and preparing" not in capsys.readouterr().out


@pytest.mark.slow
def test_a_misspelled_config_variant_is_one_line_with_a_suggestion():
  result = _run(["--config", os.path.join(ROOT, "configs", "pysrc_lm.py") + ":smal",
                 "--show_config"], timeout=120)
  assert result.returncode != 0
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("declax-train: error: config file ")
  assert "no variant 'smal'; did you mean small?" in lines[0] and "Traceback" not in result.stderr
