"""`declax-train` / `scripts/train.py`: train what a config file describes.

    declax-train --config configs/digits_mlp.py --workdir /tmp/digits --config.train.steps=300
    declax-train --config configs/pysrc_lm.py:small --workdir /tmp/lm   # get_config('small')
    declax-train --config configs/digits_mlp.py --show_config            # every key, default, help

The config is locked: overriding a key it does not have is an error that names the closest key.
The resolved config is written to `WORKDIR/config.json`; a workdir that already holds a
checkpoint resumes from it. On SIGTERM the run saves a checkpoint at the current step and exits
with status 0, so a scheduler can restart it with the same command.

Errors that declax diagnoses (any `declax.DeclaxError`: a bad config value, a mesh that does
not fit, a damaged checkpoint, a NaN loss, ...; see docs/errors.md) print one
`declax-train: error: ...` message and exit with status 1; `DECLAX_TRACEBACK=1` adds the
traceback. Any other exception is printed with its traceback under a
`declax-train: stopped by an unexpected ...` line.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
from collections.abc import Sequence

import jax
from absl import app, flags
from ml_collections import config_flags

from declax.errors import DeclaxError, did_you_mean

__all__ = ["main"]


def _env_int(name: str) -> int | None:
  value = os.environ.get(name)
  return int(value) if value else None


_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file (configs/*.py) with get_config(); PATH:VARIANT calls "
    "get_config('VARIANT') (e.g. configs/pysrc_lm.py:small). Override any key with "
    "--config.KEY=VALUE.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and the "
                               "resolved config; resumes if it holds a checkpoint. Required "
                               "unless --show_config.")
_SHOW_CONFIG = flags.DEFINE_bool("show_config", False, "Print the config tree (every key, its "
                                 "value, its default and its help) and exit without training.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() "
                                 "first (multi-host runs; JAX detects the cluster, e.g. on TPU "
                                 "VMs). Implied by --coordinator_address.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", os.environ.get("DECLAX_COORDINATOR"),
    "host:port of process 0 for jax.distributed (env DECLAX_COORDINATOR).")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", _env_int("DECLAX_NUM_PROCESSES"),
    "Number of processes in a multi-host run (env DECLAX_NUM_PROCESSES).")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", _env_int("DECLAX_PROCESS_ID"),
    "This process's index in a multi-host run (env DECLAX_PROCESS_ID).")
_INIT_TIMEOUT = flags.DEFINE_integer(
    "initialization_timeout", 300, "Seconds to wait for every process to join jax.distributed.")
flags.mark_flags_as_required(["config"])

# Loggers whose INFO lines are noise on a training console: JAX's "Unable to initialize backend
# 'tpu'", TFDS's "Downloading and preparing dataset" for datasets declax builds locally.
_QUIET_LOGGERS = ("jax._src.xla_bridge", "tensorflow_datasets", "absl")


def _config_keys(config, prefix: str = "") -> list[str]:
  keys = []
  for key, value in config.items():
    keys.append(prefix + key)
    if hasattr(value, "items"):
      keys.extend(_config_keys(value, f"{prefix}{key}."))
  return keys


def _suggest_config_key(argv: Sequence[str]) -> str | None:
  """For an unknown `--config.x.y`, the closest key of the config (or None)."""
  import importlib.util

  config_path = _config_path(argv)
  overrides = [a[len("--config."):].split("=", 1)[0] for a in argv if a.startswith("--config.")]
  if not config_path or not overrides or not os.path.exists(config_path):
    return None
  spec = importlib.util.spec_from_file_location("_declax_config", config_path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  keys = _config_keys(module.get_config())
  for key in overrides:
    if key not in keys:
      return (f"unknown config key --config.{key}"
              f"{did_you_mean(key, keys, prefix='--config.', cutoff=0.5)}")
  return None


def _fail(message: str) -> None:
  print(f"declax-train: error: {message}", file=sys.stderr)
  sys.exit(1)


def _config_path(argv: Sequence[str]) -> str | None:
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      return arg.split("=", 1)[1]
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _check_config_file(argv: Sequence[str]) -> str | None:
  """Why the `--config` file cannot give a config (missing, a syntax error, get_config()
  raising or returning something else), as one sentence naming the file; None if it can."""
  import importlib.util

  path = _config_path(argv)
  if path is None:
    return None
  args: list[str] = []
  if not os.path.exists(path) and ":" in path and os.path.exists(path.rsplit(":", 1)[0]):
    path, arg = path.rsplit(":", 1)  # ml_collections' `file.py:argument`
    args = [arg]
  if not os.path.isfile(path):
    return f"config file {path} not found (--config); check the path"
  try:
    spec = importlib.util.spec_from_file_location("_declax_config_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "get_config", None)):
      return f"config file {path} has no get_config() function; define one returning a config"
    config = module.get_config(*args)
  except SyntaxError as error:
    return (f"config file {path} has a syntax error at line {error.lineno}: {error.msg}; fix "
            "the file")
  except DeclaxError as error:  # the config refused its argument (e.g. an unknown variant)
    return f"config file {path}: {error}"
  except Exception as error:  # noqa: BLE001 - the user's code: any failure is reported
    where = traceback.extract_tb(error.__traceback__)[-1]
    return (f"config file {path}: get_config() raised {type(error).__name__}: {error} (at "
            f"{where.filename}:{where.lineno}); fix the file")
  if not hasattr(config, "items"):
    return (f"config file {path}: get_config() returned {type(config).__name__}, not a "
            "config; return an ml_collections.ConfigDict (e.g. default_config.get_config() "
            "with your settings)")
  return None


def _run(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if _SHOW_CONFIG.value:
    from declax.training.config_help import show_config

    print(show_config(_CONFIG.value, flags.FLAGS["config"].config_filename))
    sys.exit(0)
  if _WORKDIR.value is None:
    _fail("--workdir is required (the directory for checkpoints, metrics and the resolved "
          "config), e.g. --workdir /tmp/declax/run")
  if not _WORKDIR.value.strip():
    _fail("--workdir is empty (an unset variable?); name the directory for checkpoints and "
          "logs, e.g. --workdir=/tmp/run")
  if _DISTRIBUTED.value or _COORDINATOR.value:
    from declax.sharding import initialize_distributed

    if _COORDINATOR.value and (_NUM_PROCESSES.value is None or _PROCESS_ID.value is None):
      raise app.UsageError("--coordinator_address needs --num_processes and --process_id "
                           "(or DECLAX_NUM_PROCESSES / DECLAX_PROCESS_ID)")
    initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                           initialization_timeout=_INIT_TIMEOUT.value)
  if flags.FLAGS.log_dir:  # console lines go to absl's log file too (see metric_writers)
    _log_console_to_absl_file(flags.FLAGS.log_dir)
  for name in _QUIET_LOGGERS:  # (absl: Orbax logs every save at INFO, TFDS every prepare)
    logging.getLogger(name).setLevel(logging.WARNING)
  from declax.training.from_config import train_and_evaluate

  try:
    loop = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except Exception as error:  # noqa: BLE001 - every failure gets a declax sentence on top
    _report_failure(error)
    sys.exit(1)
  sample = _CONFIG.value.get("sample")
  if sample and not loop.preempted and jax.process_index() == 0:
    from declax.training.from_config import sample_from_workdir

    for text in sample_from_workdir(_WORKDIR.value, **sample.to_dict()):
      print(f"Sample:\n{text}", flush=True)
  if loop.preempted:
    print(f"Preempted at step {loop.step}: checkpoint saved in {_WORKDIR.value}; rerun the same "
          "command to resume.", flush=True)
  sys.exit(0)


def _log_console_to_absl_file(log_dir: str) -> None:
  from absl import logging as absl_logging

  from declax.training.metric_writers import CONSOLE_LOG

  handler = absl_logging.get_absl_handler()
  handler.use_absl_log_file("declax-train", log_dir)
  CONSOLE_LOG.addHandler(handler)
  CONSOLE_LOG.setLevel(logging.INFO)


def _report_failure(error: BaseException) -> None:
  """Prints why the run stopped: declax's diagnosis alone, or a sentence over the traceback."""
  name = type(error).__name__
  if isinstance(error, DeclaxError):
    print(f"declax-train: error: {name}: {error}", file=sys.stderr)
    if os.environ.get("DECLAX_TRACEBACK"):
      traceback.print_exception(error, file=sys.stderr)
    else:
      print("(set DECLAX_TRACEBACK=1 to see the traceback)", file=sys.stderr)
    return
  first = (str(error).strip().splitlines() or [""])[0][:300]
  print(f"declax-train: stopped by an unexpected {name} (not diagnosed by declax; traceback "
        f"below): {first}", file=sys.stderr)
  traceback.print_exception(error, file=sys.stderr)


_HELP = """Train what a config file describes (declax).

USAGE: {prog} --config CONFIG.py[:VARIANT] --workdir DIR [--config.KEY=VALUE ...]

  {prog} --config configs/digits_mlp.py --workdir /tmp/declax/digits_mlp
  {prog} --config configs/pysrc_lm.py:small --workdir /tmp/declax/lm --config.train.steps=100
  {prog} --config configs/digits_mlp.py --show_config     # every config key, default and help
{flags}

Errors print one 'declax-train: error:' line (DECLAX_TRACEBACK=1 adds the traceback); see
docs/errors.md. All flags (absl, JAX, chex): --helpfull"""


def _help(prog: str) -> str:
  """declax's own flags with their help (absl's --help lists only the main module's flags)."""
  own = flags.FLAGS.module_help(__name__).replace(f"{__name__}:", "flags:", 1)
  return _HELP.format(prog=prog, flags=own)


def _parse_flags(argv: list[str]) -> list[str]:
  if any(a in ("--help", "-h", "-?", "--helpshort") for a in argv[1:]):
    print(_help(os.path.basename(argv[0]) if argv else "declax-train"))
    sys.exit(0)
  problem = _check_config_file(argv[1:])
  if problem:
    _fail(problem)
  try:
    return flags.FLAGS(argv)
  except (flags.Error, KeyError, AttributeError) as error:
    # ml_collections reports an unknown key as a bare KeyError/AttributeError with a traceback.
    hint = _suggest_config_key(argv[1:])
    message = hint or " ".join(str(error).replace("\\'", "'").replace("\\n", " ").split())
    print(f"FATAL Flags parsing error: {message}\nPass --helpfull to see help on flags.",
          file=sys.stderr)
    sys.exit(1)


# XLA's CPU collectives abort the process ("Expected 4 threads to join the rendezvous, but
# only 2 of them arrived on time") when one device's thread waits longer than this; with more
# fake devices than cores, a loaded machine gets there. The abort cannot be caught, so the
# timeout is raised up front.
COLLECTIVE_TIMEOUT_FLAG = "--xla_cpu_collective_call_terminate_timeout_seconds"


def fake_device_flags(xla_flags: str, cores: int) -> tuple[str, str | None]:
  """`(XLA_FLAGS to use, warning or None)` for `--xla_force_host_platform_device_count=N`:
  with N > `cores`, the collectives' termination timeout is raised to 600 s (unless set)."""
  match = re.search(r"--xla_force_host_platform_device_count=(\d+)", xla_flags)
  n_devices = int(match.group(1)) if match else 1
  if n_devices <= cores or COLLECTIVE_TIMEOUT_FLAG in xla_flags:
    return xla_flags, None
  warning = (f"declax: {n_devices} fake CPU devices on {cores} cores: XLA's all-reduce "
             "rendezvous may abort the run when the device threads cannot all run in time "
             f"(\"Expected {n_devices} threads to join the rendezvous\"); raising "
             f"{COLLECTIVE_TIMEOUT_FLAG} to 600. Use at most {cores} devices "
             f"(--xla_force_host_platform_device_count={cores}) for speed.")
  return f"{xla_flags} {COLLECTIVE_TIMEOUT_FLAG}=600".strip(), warning


def _guard_fake_devices() -> None:
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  flags_, warning = fake_device_flags(os.environ.get("XLA_FLAGS", ""), cores or 1)
  if warning:  # before JAX starts its backend (the first device use)
    os.environ["XLA_FLAGS"] = flags_
    print(warning, file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> None:
  """The console entry point (`declax-train`)."""
  _guard_fake_devices()
  app.run(_run, argv=list(sys.argv if argv is None else argv), flags_parser=_parse_flags)


if __name__ == "__main__":
  main()
