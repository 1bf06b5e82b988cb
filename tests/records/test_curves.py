"""Training curves: a valid SVG with one line per loss term and per dev split, and the plotted data embedded."""

from __future__ import annotations

import itertools
import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kdkit.records.curves import CURVES_FILE, dev_series, loss_series, nice_ticks, training_curves_svg

SVG = "{http://www.w3.org/2000/svg}"


def _polylines(root: ET.Element) -> dict[str, list[tuple[float, float]]]:
    lines = {}
    for element in root.iter(f"{SVG}polyline"):
        points = [tuple(map(float, pair.split(","))) for pair in element.attrib["points"].split()]
        lines[element.attrib["data-series"]] = points
    return lines


def test_the_run_picture_plots_every_logged_loss_term_and_each_evaluation(tiny_run: Path):
    summary = json.loads((tiny_run / "run.json").read_text())
    root = ET.parse(tiny_run / "best" / CURVES_FILE).getroot()  # valid XML
    assert root.tag == f"{SVG}svg"
    lines = _polylines(root)
    logged = [entry for entry in summary["train_log"] if "loss" in entry]
    assert len(logged) == 6  # 12 steps, logged every 2
    assert set(lines) == {"loss", "loss_ce", "loss_kd", "eval_accuracy"}
    for name in ("loss", "loss_ce", "loss_kd"):
        assert len(lines[name]) == len(logged), name
    assert len(lines["eval_accuracy"]) == len(summary["history"]) == 2
    # x grows with the step; a larger value is drawn higher (smaller y)
    for name in ("loss", "loss_ce", "loss_kd"):
        xs = [x for x, _ in lines[name]]
        assert xs == sorted(xs) and len(set(xs)) == len(xs)
        values = [entry[name] for entry in logged]
        ys = [y for _, y in lines[name]]
        for i in range(len(values)):
            for j in range(len(values)):
                if values[i] > values[j] + 1e-9:
                    assert ys[i] < ys[j], (name, values, ys)
    # the data behind the picture is embedded and is run.json's
    data = json.loads(root.find(f"{SVG}metadata").text)  # type: ignore[union-attr,arg-type]
    assert data["loss"]["loss_kd"] == [[float(e["step"]), e["loss_kd"]] for e in logged]
    assert data["dev"]["eval_accuracy"] == [[float(e["step"]), e["eval_accuracy"]] for e in summary["history"]]
    titles = {element.text for element in root.iter(f"{SVG}text")}
    assert {"training loss terms", "dev accuracy", "loss_kd"} <= titles


def test_multi_split_dev_metrics_and_an_attribution_term():
    summary = {
        "main_metric": "accuracy",
        "train_log": [
            {"step": 5, "loss": 1.0, "loss_ce": 0.6, "loss_kd": 0.3, "loss_attr": 0.1, "learning_rate": 1e-5},
            {"step": 10, "loss": 0.8, "loss_ce": 0.5, "loss_kd": 0.2, "loss_attr": 0.1},
            {"train_loss": 0.9, "step": 10},  # Trainer's closing summary: not a logged loss
        ],
        "history": [
            {"step": 10, "eval_validation_matched_accuracy": 0.6, "eval_validation_mismatched_accuracy": 0.62},
        ],
        "train": {"steps": 10},
    }
    assert list(loss_series(summary["train_log"])) == ["loss", "loss_attr", "loss_ce", "loss_kd"]
    assert set(dev_series(summary["history"], "accuracy")) == {
        "eval_validation_matched_accuracy",
        "eval_validation_mismatched_accuracy",
    }
    root = ET.fromstring(training_curves_svg(summary))
    assert set(_polylines(root)) == {
        "loss",
        "loss_attr",
        "loss_ce",
        "loss_kd",
        "eval_validation_matched_accuracy",
        "eval_validation_mismatched_accuracy",
    }


def test_nothing_logged_still_gives_a_valid_picture_that_says_so():
    summary = {
        "main_metric": "mcc",
        "train_log": [],
        "history": [],
        "config": {"training": {"logging_steps": 50}},
        "train": {"steps": 32},
    }
    root = ET.fromstring(training_curves_svg(summary, title="a & b <run>"))
    texts = " ".join(element.text or "" for element in root.iter(f"{SVG}text"))
    assert "no loss logged: 32 steps, logging every 50 (try --logging-steps 3)" in texts
    assert "no evaluation recorded" in texts
    assert root.find(f"{SVG}title").text == "a & b <run>"  # type: ignore[union-attr]
    assert not _polylines(root)


@pytest.mark.parametrize(
    ("low", "high"), [(0.0, 1.0), (0.3391, 0.3474), (0.0, 18.0), (2.0, 2.0), (-1.5, 250.0), (0.5625, 0.5625)]
)
def test_ticks_are_round_and_cover_the_range(low: float, high: float):
    ticks = nice_ticks(low, high)
    assert ticks[0] <= low and ticks[-1] >= high
    assert 2 <= len(ticks) <= 12
    steps = {round(b - a, 9) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1
    step = steps.pop()
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert round(mantissa, 6) in (1, 2, 2.5, 5, 10)
