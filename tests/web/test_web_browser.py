"""The page of ``kdkit web`` in a real browser: Debian's Chromium, headless, driven by chromium-driver (selenium),
the page served by ``python -m http.server`` (clients/browser.py). No mock DOM.

On tiny exports (a single-text task, a sentence-pair task, a regression) and, marked e2e, on a 3-layer MiniLM
student of SST-2 (README's setting, int8): 20 inputs get the labels of ``kdkit predict --batch-size 1`` at the same
precision, the browser's occlusion scores equal :func:`kdkit.web.occlusion.occlude` on the same ONNX file within 1e-3,
a broken page folder shows its error text, and no request leaves 127.0.0.1.

Skipped only where chromium, chromium-driver or selenium are missing (.ci/run installs them)."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import random
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from kdkit.cli import app
from kdkit.config import DataConfig
from kdkit.data.tasks import TaskSpec
from kdkit.export.fidelity import FidelityOptions
from kdkit.export.inference import OnnxClassifier
from kdkit.export.stage import ExportOptions, export_onnx
from kdkit.models.saving import save_model
from kdkit.testing.models import (
    BINARY_TASK,
    REGRESSION_TASK,
    TINY_WORDS,
    perturb_parameters,
    tiny_classifier,
    tiny_tokenizer,
)
from kdkit.web.occlusion import occlude
from kdkit.web.page import make_page

REPO = Path(__file__).resolve().parents[2]
#: keep an int8 model whatever it loses: these tests check the page, not int8's accuracy (an untrained MiniLM
#: head loses 9 of 32 points in int8, docs/deploy.md; the guard is tested in tests/export/test_fidelity.py)
KEEP_INT8 = FidelityOptions(keep_int8=True)
PAIR_TASK = TaskSpec(
    name="tinypair",
    text_fields=("premise", "hypothesis"),
    label_names=("no", "yes"),
    metrics=("accuracy",),
    main_metric="accuracy",
)
#: the largest |Δ| allowed between the browser's occlusion scores and Python's: the issue's 1e-3 in fp32 (measured:
#: ~1e-6). int8 quantises activations per call, and onnxruntime-web (WebAssembly) and the Python wheel (x86 kernels)
#: round some of them differently (their fp32 parts differ by ~1e-7, enough to flip a rounding now and then): a flip
#: moves an output by up to ~1e-2, as between two graph optimisation levels of the Python wheel alone (docs/deploy.md).
#: So in int8 every token must be within 5e-2 and the two heatmaps must agree: correlation of the scores >= 0.95
#: (measured: 0.9997 for README's trained SST-2 student, 0.978 for the untrained one below, whose scores are small).
OCCLUSION_TOLERANCE = {"fp32": 1e-3, "int8": 5e-2}
INT8_MIN_CORRELATION = 0.95
#: the largest |Δ| between the page's class probabilities and kdkit predict's
PROBABILITY_TOLERANCE = {"fp32": 1e-4, "int8": 1e-2}


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


browser_kit = _load("kdkit_browser", REPO / "clients" / "browser.py")
harness = _load("kdkit_client_harness", REPO / "clients" / "harness.py")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = browser_kit.browser_missing() or harness.node_missing()
    if reason:
        pytest.skip(reason)
    harness.ensure_node_modules()
    with browser_kit.chromium() as chromium:
        yield chromium


def _inputs(task: TaskSpec, count: int, seed: int) -> tuple[list[str], list[str] | None]:
    rng = random.Random(seed)
    sentence = lambda: " ".join(rng.choice(TINY_WORDS) for _ in range(rng.randint(3, 14)))  # noqa: E731
    texts = [sentence() for _ in range(count)]
    return texts, ([sentence() for _ in range(count)] if len(task.text_fields) == 2 else None)


def _tiny_page(directory: Path, task: TaskSpec, seed: int) -> Path:
    """A tiny classifier with perturbed weights (its labels vary), exported with int8 (the fast torchscript
    exporter: the page does not care which one), and its page."""
    tokenizer = tiny_tokenizer(directory / "tokenizer")
    model = perturb_parameters(tiny_classifier(num_labels=task.num_labels, vocab_size=len(tokenizer), seed=seed), seed)
    texts, pairs = _inputs(task, 24, seed)
    if not task.is_regression:
        _centre(model, tokenizer, *_inputs(task, 20, seed=11))
    save_model(model, tokenizer, task, directory / "model", max_length=32)
    validation = directory / "validation.csv"
    with validation.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*task.text_fields, "label"])
        for i, text in enumerate(texts):
            label = f"{i % 5 / 2:.1f}" if task.is_regression else (task.label_names or ())[i % 2]
            writer.writerow([text, *([pairs[i]] if pairs else []), label])
    data = DataConfig(validation_file=validation)
    options = ExportOptions(
        output=directory / "export", data=data, quantize="int8", exporter="torchscript", fidelity=KEEP_INT8
    )
    export = export_onnx(directory / "model", options).directory
    return make_page(export).directory


def _centre(model: Any, tokenizer: Any, texts: list[str], pairs: list[str] | None) -> None:
    """Shift a binary head's bias so that half of these inputs get each label (the checks could not fail else)."""
    import torch

    with torch.no_grad():
        logits = model(**tokenizer(texts, pairs, padding=True, return_tensors="pt")).logits
        model.classifier.bias[1] += (logits[:, 0] - logits[:, 1]).median()


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> dict[str, Path]:
    tasks = {"single": (BINARY_TASK, 3), "pair": (PAIR_TASK, 5), "regression": (REGRESSION_TASK, 7)}
    return {
        kind: _tiny_page(tmp_path_factory.mktemp(f"web-{kind}"), task, seed) for kind, (task, seed) in tasks.items()
    }


def _kdkit_predict(export: Path, precision: str, texts: list[str], pairs: list[str] | None, folder: Path) -> list[dict]:
    """``kdkit predict --file F --json --batch-size 1 --precision P`` (one text per call, as the page)."""
    path = folder / f"inputs-{precision}.jsonl"
    fields = ("premise", "hypothesis") if pairs else ("text",)
    rows = [dict(zip(fields, (t, *([pairs[i]] if pairs else [])), strict=True)) for i, t in enumerate(texts)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    command = ["predict", str(export), "--file", str(path), "--json", "--batch-size", "1", "--precision", precision]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    return list(json.loads(result.stdout)["predictions"])  # stderr may warn that a text was truncated


def _assert_local(browser: Any, allowed: tuple[str, ...] = ()) -> None:
    """No request of the pages opened so far left 127.0.0.1 (blob: URLs are the page's own memory, file: the disk)."""
    local = ("http://127.0.0.1:", "blob:", "file:///")
    outside = [url for url in browser.requests() if not url.startswith((*local, *allowed))]
    assert outside == [], outside


def _check_against_python(
    browser: Any, page: Path, url: str, precision: str, texts: list[str], pairs: list[str] | None, tmp_path: Path
) -> list[dict[str, Any]]:
    """Open the page at ``precision``, classify every input in it; compare with kdkit predict and occlude()."""
    timeline = browser.open(f"{url}?precision={precision}")
    assert timeline["ready"] > 0 and browser.error_text() == ""
    export = page.parent
    classifier = OnnxClassifier(export, precision=precision)  # type: ignore[arg-type]
    predicted = _kdkit_predict(export, precision, texts, pairs, tmp_path)
    results: list[dict[str, Any]] = []
    scores: list[tuple[float, float]] = []  # (browser, Python) per occluded token
    for i, text in enumerate(texts):
        pair = pairs[i] if pairs else None
        got = browser.classify(text, pair)
        reference = occlude(classifier, text, pair)
        assert got["precision"] == precision and got["ids"] == reference.ids and got["tokens"] == reference.tokens
        if pairs is None:  # a long text is cut where kdkit predict cuts it (pairs: docs/deploy.md)
            assert got["truncated"] == predicted[i]["truncated"]
        assert got["label"] == predicted[i]["label"] == reference.label
        if reference.label is None:  # regression: the value
            assert got["value"] == pytest.approx(predicted[i]["score"], abs=1e-4)
        else:
            probabilities = [got["probabilities"][name] for name in predicted[i]["scores"]]
            difference = np.abs(np.asarray(probabilities) - list(predicted[i]["scores"].values())).max()
            assert difference <= PROBABILITY_TOLERANCE[precision]
        assert got["occluded"] == reference.occluded
        scores.extend(
            (a, b) for a, b, hidden in zip(got["scores"], reference.scores, got["occluded"], strict=True) if hidden
        )
        results.append(got)
    in_browser, in_python = np.asarray(scores).T
    assert np.abs(in_browser - in_python).max() <= OCCLUSION_TOLERANCE[precision]
    if precision == "int8":
        assert np.corrcoef(in_browser, in_python)[0, 1] >= INT8_MIN_CORRELATION
    return results


CASES = [("single", "int8"), ("single", "fp32"), ("pair", "int8"), ("pair", "fp32"), ("regression", "int8")]


@pytest.mark.parametrize(("kind", "precision"), CASES)
def test_the_page_gives_kdkit_predicts_labels_and_pythons_occlusion_scores(
    kind: str, precision: str, browser: Any, pages: dict[str, Path], tmp_path: Path
):
    page = pages[kind]
    texts, pairs = _inputs({"single": BINARY_TASK, "pair": PAIR_TASK, "regression": REGRESSION_TASK}[kind], 20, seed=11)
    if kind == "single":
        texts[-1] = " ".join(TINY_WORDS[:45])  # longer than the export's 32 tokens: cut where kdkit predict cuts it
    with browser_kit.http_server(page) as url:
        results = _check_against_python(browser, page, url, precision, texts, pairs, tmp_path)
    if kind != "regression":
        assert len({r["label"] for r in results}) == 2, "one label for every input: the check could not fail"
    if kind == "single":
        assert results[-1]["truncated"] and len(results[-1]["ids"]) == 32
    assert max(abs(s) for r in results for s in r["scores"]) > 1e-3, "no token matters: the check could not fail"
    _assert_local(browser)


def test_typing_in_the_boxes_shows_the_label_scores_and_heatmap(browser: Any, pages: dict[str, Path], tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = browser.driver
    with browser_kit.http_server(pages["pair"]) as url:
        browser.open(url)
        assert driver.title == "tinypair: kdkit student" and not driver.find_element(By.ID, "pair-box").get_attribute(
            "hidden"
        )
        assert len(driver.find_elements(By.CSS_SELECTOR, "#examples button")) == 4
        for precision in ("int8", "fp32"):
            Select(driver.find_element(By.ID, "precision")).select_by_value(precision)
            browser.call("while (!document.getElementById('status').textContent.startsWith(`Ready (${arguments[0]})`))"
                         " await new Promise((r) => setTimeout(r, 20));", precision)  # fmt: skip
            expected = browser.classify("the cat sat on the mat", "a cat was on a mat")
            for box, text in (("text", "the cat sat on the mat"), ("pair", "a cat was on a mat")):
                driver.find_element(By.ID, box).clear()
                driver.find_element(By.ID, box).send_keys(text)
            runs = int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-runs") or 0)
            driver.find_element(By.ID, "classify").click()
            browser.call(f"while (Number(document.body.dataset.runs || 0) <= {runs})"
                         " await new Promise((r) => setTimeout(r, 20));")  # fmt: skip
            assert driver.find_element(By.ID, "label").text == expected["label"]
            rows = [row.text.split()[:2] for row in driver.find_elements(By.CSS_SELECTOR, "#scores tr")]
            assert rows == [[name, f"{p:.4f}"] for name, p in expected["probabilities"].items()]
            spans = driver.find_elements(By.CSS_SELECTOR, "#heatmap span")
            assert [float(s.get_attribute("data-score")) for s in spans] == expected["scores"]
            assert f"({precision})" in driver.find_element(By.ID, "timing").text
        browser.screenshot(tmp_path / "page.png")
    _assert_local(browser)


def test_the_page_works_under_a_sub_path(browser: Any, pages: dict[str, Path]):
    """Hosted at https://host/some/path/: everything it loads is relative to the page."""
    with browser_kit.http_server(pages["single"].parent.parent) as url:  # serves .../export/web/ as /export/web/
        browser.open(url + "export/web/")
        assert browser.classify("the movie was good")["label"] in ("neg", "pos")
    _assert_local(browser)


def _broken_copy(page: Path, folder: Path) -> Path:
    copy = folder / "page"
    shutil.copytree(page, copy)
    return copy


def test_a_bad_model_folder_shows_the_error_not_a_blank_page(browser: Any, pages: dict[str, Path], tmp_path: Path):
    page = _broken_copy(pages["single"], tmp_path)
    model = page / "model" / "onnx" / "model_quantized.onnx"
    model.unlink()  # a hard link to the export's file: replace it, never write through it
    model.write_bytes(b"not an onnx model")
    with browser_kit.http_server(page) as url:
        with pytest.raises(browser_kit.PageFailed) as failed:
            browser.open(url)
        assert "The model cannot be loaded. model/onnx/model_quantized.onnx (int8) could not be loaded:" in str(
            failed.value
        )
        assert "Fix: make the page again from a valid export" in str(failed.value)
        assert browser.driver.find_element("tag name", "body").get_attribute("data-state") == "error"
        (page / "model" / "tokenizer.json").unlink()
        with pytest.raises(
            browser_kit.PageFailed, match=r"The tokenizer \(model/tokenizer.json\) is missing or unreadable: HTTP 404"
        ):
            browser.open(url)
        (page / "kdkit_web.json").unlink()
        with pytest.raises(
            browser_kit.PageFailed, match=r"kdkit_web.json \(kdkit_web.json\) is missing or unreadable: HTTP 404"
        ):
            browser.open(url)
    _assert_local(browser)
    browser.driver.get((pages["single"] / "index.html").as_uri())  # from disk: app.js cannot even load
    assert re.search(
        "(?s)opened as a file.*Fix: serve the folder: run python -m http.server 8000", browser.error_text()
    )


def test_a_cdn_page_offline_says_it_needs_the_internet(browser: Any, pages: dict[str, Path], tmp_path: Path):
    page = make_page(pages["single"].parent, tmp_path / "cdn", cdn=True).directory
    with (
        browser_kit.http_server(page) as url,
        pytest.raises(
            browser_kit.PageFailed,
            match="(?s)transformers.js could not be loaded from https://cdn.jsdelivr.net/.*needs internet access",
        ),
    ):
        browser.open(url)
    _assert_local(browser, allowed=("https://cdn.jsdelivr.net/npm/@huggingface/transformers@",))


# -- a MiniLM student ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm_page(tmp_path_factory: pytest.TempPathFactory, glue_dir: Path, browser: Any) -> Path:
    """README's student setting: a 3-layer copy of the embedded MiniLM on SST-2 (max length 128, int8), its head
    perturbed and centred on the dev sentences so that labels vary (no training: only the labels' agreement is
    checked). KDKIT_WEB_E2E_EXPORT names a trained student's export to use instead."""
    from minilm_student import save_minilm_sst2_student

    folder = tmp_path_factory.mktemp("web-minilm")
    if os.environ.get("KDKIT_WEB_E2E_EXPORT"):
        export = folder / "onnx"
        shutil.copytree(os.environ["KDKIT_WEB_E2E_EXPORT"], export, ignore=shutil.ignore_patterns("web"))
        return make_page(export).directory
    model = save_minilm_sst2_student(folder, glue_dir, layers=3)
    data = DataConfig(data_dir=glue_dir, max_eval_samples=32)
    options = ExportOptions(output=folder / "onnx", data=data, quantize="int8", fidelity=KEEP_INT8)
    export = export_onnx(model, options).directory
    return make_page(export).directory


@pytest.mark.e2e
@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_a_minilm_student_on_sst2_in_the_browser(
    precision: str, minilm_page: Path, glue_dir: Path, browser: Any, tmp_path: Path
):
    import pandas as pd

    texts = pd.read_parquet(glue_dir / "sst2" / "validation-00000-of-00001.parquet")["sentence"][:20].tolist()
    with browser_kit.http_server(minilm_page) as url:
        results = _check_against_python(browser, minilm_page, url, precision, texts, None, tmp_path)
        assert len({r["label"] for r in results}) == 2, "one label for every sentence: the check could not fail"
        if precision == "int8":
            sentence = "a gripping , funny and moving film that never lets up and leaves you wanting more ."
            timeline = browser.open(f"{url}?text={sentence.replace(' ', '%20')}")
            assert timeline["first_result"] > timeline["ready"] > 0
            screenshot = os.environ.get("KDKIT_WEB_SCREENSHOT")
            browser.screenshot(Path(screenshot) if screenshot else tmp_path / "minilm.png")
    _assert_local(browser)
