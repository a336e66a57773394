"""How far a reader walks from a config to the jitted train step: files and calls on the way.

    python benchmarks/config_path.py [--config configs/digits_mlp.py]

It runs `train_and_evaluate` for one step (no eval, no checkpoint) under a profiler hook and
counts what runs before the train step's Python body is first traced, in declax's own code:
- *plumbing* (`declax/training`, `registry.py`, `sharding.py`, `errors.py`: the code between a
  config and the step, not the model or the data pipeline): its functions, its files, and its
  hops (distinct caller -> callee edges a reader follows);
- *all*: every declax function and file that runs (layers and data included);
- the *spine*: the declax call stack when `make_train_step` is entered, i.e. the chain a reader
  follows from `train_and_evaluate(config)` to the function that builds the step.
Run it on two checkouts (`PYTHONPATH=other/checkout python benchmarks/config_path.py`) to compare.
"""

import argparse
import importlib.util
import json
import os
import sys
import tempfile

PLUMBING = {"declax/registry.py", "declax/sharding.py", "declax/errors.py"}


def measure(config_path: str) -> dict:
  import declax
  from declax.training import from_config

  root = os.path.dirname(os.path.abspath(declax.__file__))
  spec = importlib.util.spec_from_file_location("config_module", config_path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.train.steps = 1
  config.train.eval_every = 10**6
  config.train.checkpoint_every = 10**6

  ours = lambda code: code.co_filename.startswith(root)
  rel = lambda code: os.path.relpath(code.co_filename, os.path.dirname(root))
  plumbing = lambda name: name.startswith("declax/training/") or name in PLUMBING
  every, hops, spine, done = set(), set(), [], False

  def hook(frame, event, _):
    nonlocal done
    if event != "call" or done or not ours(frame.f_code) or frame.f_code.co_name[0] == "<":
      return  # comprehensions and lambdas are not hops a reader follows
    callee = (rel(frame.f_code), frame.f_code.co_name)
    every.add(callee)
    if callee[1] == "train_step" and callee[0].endswith("step.py"):
      done = True
    if callee[1] == "make_train_step" and not spine:
      f = frame
      while f is not None:
        if ours(f.f_code) and f.f_code.co_name[0] != "<":
          spine.insert(0, f"{rel(f.f_code)}:{f.f_code.co_name}")
        f = f.f_back
    if not plumbing(callee[0]):
      return
    caller = frame.f_back
    while caller is not None and not (ours(caller.f_code) and plumbing(rel(caller.f_code))
                                      and caller.f_code.co_name[0] != "<"):
      caller = caller.f_back
    if caller is not None:
      hops.add(((rel(caller.f_code), caller.f_code.co_name), callee))

  with tempfile.TemporaryDirectory() as workdir:
    sys.setprofile(hook)
    try:
      from_config.train_and_evaluate(config, workdir)
    finally:
      sys.setprofile(None)
  if not done:
    raise SystemExit("the train step was never traced: is the config's train.steps > 0?")
  ends = {f for hop in hops for f in hop}
  return {"plumbing_functions": len(ends), "plumbing_files": len({f for f, _ in ends}),
          "plumbing_hops": len(hops), "plumbing_file_list": sorted({f for f, _ in ends}),
          "all_functions": len(every), "all_files": len({f for f, _ in every}),
          "spine_hops": len(spine) - 1, "spine_files": len({s.split(":")[0] for s in spine}),
          "spine": spine}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/digits_mlp.py")
  result = measure(parser.parse_args().config)
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  main()
