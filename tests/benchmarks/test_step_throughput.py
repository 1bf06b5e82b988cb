"""benchmarks/step_throughput.py in host-overhead mode for a few steps: it runs and its JSON says what it should."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch

import kdkit

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "step_throughput.py"


def _load_benchmark(monkeypatch):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("step_throughput", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # (dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


def test_host_mode_measures_kd_adkd_and_their_floor(glue_dir, tmp_path, monkeypatch):
    benchmark = _load_benchmark(monkeypatch)
    output = tmp_path / "step.json"
    threads = torch.get_num_threads()
    argv = ["--mode", "host", "--tasks", "sst2", "--batch-sizes", "8", "--variants", "kd", "adkd", "--floor",
            "--steps", "4", "--warmup", "2", "--samples", "48", "--threads", str(threads), "--data-dir", str(glue_dir),
            "--device", "cpu", "--output", str(output), "--label", "test"]  # fmt: skip
    benchmark.main(argv)
    result = json.loads(output.read_text())
    assert result["benchmark"] == "step_throughput" and result["mode"] == "host" and result["label"] == "test"
    assert Path(result["kdkit"]["path"]) == Path(kdkit.__file__).parent
    assert result["machine"]["torch_threads"] == threads
    [run] = result["runs"]
    assert (run["task"], run["batch_size"], run["order"], run["device"]) == ("sst2", 8, "round-robin", "cpu")
    assert run["examples"] == 48
    assert run["same_batches"] is True  # round-robin over the same length-grouped batches
    assert set(run["variants"]) == {"kd", "adkd", "kd@floor", "adkd@floor"}
    for name, variant in run["variants"].items():
        assert variant["steps"] == 4, name
        assert variant["median_cpu_ms"] > 0 and 0 < variant["median_step_ms"] <= variant["mean_step_ms"] * 4
        assert variant["examples_per_s"] > 0 and 1 <= variant["mean_padded_length"] <= 128
    adkd = run["variants"]["adkd"]
    assert adkd["ratio_to_kd_paired_median"] > 0 and adkd["cpu_ratio_to_kd_paired_median"] > 0
    assert "ratio_to_kd_paired_median" not in run["variants"]["kd"]
