"""Smoke tests: every benchmark runs end to end at tiny sizes (`--quick`) and prints its tables.

No timing is asserted: the numbers of a loaded CI machine mean nothing. Each benchmark's `main`
runs in this process (JAX starts once), with the smallest settings that still exercise every
code path (compile, interleaved timing, memory/FLOP analysis, the Loop, scan_layers).
"""

import pytest

from benchmarks import common, loop_overhead, mfu, overhead, scaling


@pytest.mark.slow  # minutes on 2 shared cores; runs in CI's full suite
def test_overhead_quick_prints_ratios_and_targets():
  text = overhead.main(["--quick", "--steps", "2", "--compile-repeats", "1"])
  assert "| flax |" in text and "| declax |" in text and "| declax_step |" in text
  assert "MLP step ratio" in text and "LM compile ratio" in text and "memory ratio" in text
  assert "command: `python benchmarks/overhead.py --quick" in text


@pytest.mark.slow  # minutes on 2 shared cores; runs in CI's full suite
def test_mfu_quick_with_profile():
  text = mfu.main(["--quick", "--steps", "1", "--profile", "--no-baseline", "--compare-attention"])
  assert "MFU (analytic)" in text and "| declax |" in text
  assert "Where the time goes: declax" in text and "| declax_jax_attention |" in text


@pytest.mark.slow  # minutes on 2 shared cores; runs in CI's full suite
def test_loop_overhead_quick():
  text = loop_overhead.main(["--quick", "--models", "mlp", "--rounds", "1"])
  assert "| mlp |" in text and "Loop.run overhead" in text


@pytest.mark.slow  # minutes on 2 shared cores; runs in CI's full suite
def test_scaling_quick_covers_scan_and_batch():
  text = scaling.main(["--quick", "--layers", "1", "--batches", "1", "--steps", "1"])
  assert "step (scan)" in text and "tokens/s" in text


def test_analytic_flops_match_the_issue():
  # The issue's TransformerLM: ~92 GFLOP per step (forward + backward, full attention).
  assert mfu.analytic_flops(overhead.LM_SIZES["full"]) == pytest.approx(91.8e9, rel=1e-3)


def test_device_peaks_and_statistics():
  class Device:
    device_kind = "NVIDIA H100 80GB HBM3 SXM"

  assert common.device_peak_flops(Device(), "bfloat16") == pytest.approx(989e12)
  Device.device_kind = "Some Accelerator"
  assert common.device_peak_flops(Device(), "bfloat16") is None
  assert common.paired_ratio([2.0, 4.0, 6.0, 8.0], [1.0, 2.0, 3.0, 4.0])[0] == 2.0
  assert common.markdown_table(["a", "b"], [[1, 2]]).splitlines()[2] == "| 1 | 2 |"


@pytest.mark.slow
def test_accelerator_smoke_writes_json_and_table(tmp_path):
  from benchmarks import accelerator

  results = accelerator.main(["--smoke", "--out", str(tmp_path)])
  assert results["platform"] == "cpu"
  assert results["attention"].startswith("cpu (CPU, bfloat16")  # the selection, reported
  (step,) = results["step"]
  assert step["size"] == "smoke" and step["declax_step_s"] > 0 and step["ratio"] > 0
  assert results["loop"][0]["loop_step_s"] > 0
  assert {r["model"] for r in results["long"]} == {"TransformerLM", "ReformerLM"}
  assert all(r.get("temp_bytes") for r in results["long"])
  assert [r["batch"] for r in results["decode"]] == [1, 4]
  table = (tmp_path / "accelerator.md").read_text()
  assert "declax/Flax" in table and "ReformerLM" in table and "tokens/s" in table
  assert "attention: cpu" in table
  assert (tmp_path / "accelerator.json").exists()


@pytest.mark.slow  # one step of digits_mlp through train_and_evaluate
def test_config_path_counts_the_walk_from_config_to_step():
  from benchmarks import config_path

  result = config_path.measure("configs/digits_mlp.py")
  assert result["spine"][0].endswith("from_config.py:train_and_evaluate")
  assert result["spine"][-1].endswith("step.py:make_train_step")
  assert result["spine_hops"] == len(result["spine"]) - 1 >= 2
  assert "declax/training/loop.py" in result["plumbing_file_list"]
  assert result["plumbing_files"] <= result["all_files"]
  assert result["plumbing_hops"] >= result["plumbing_functions"] - 1 > 0
