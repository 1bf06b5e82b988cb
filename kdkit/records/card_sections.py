"""The body of a model card (:mod:`kdkit.records.model_card`): Markdown sections written from a run's ``run.json``
and, for an export, its ``kdkit_export.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdkit.records.fidelity import FidelityReport, class_rows, engine_rows, summary_lines

_SAMPLES = {"sst2": "a gripping, funny and moving film"}
_PAIR = ("The cat sat on the mat.", "A cat was sitting on a mat.")
_ENGINES = {"pytorch": "PyTorch", "onnx_fp32": "ONNX fp32", "onnx_int8": "ONNX int8"}


@dataclass
class Facts:
    """What a card is written from: the run summary (run.json), the teacher's run.json when known, the saved
    model's config.json, and the folder's path as a user would type it."""

    summary: dict[str, Any]
    teacher_run: dict[str, Any] | None = None
    model_config: dict[str, Any] = field(default_factory=dict)
    location: str = "."

    @property
    def task(self) -> dict[str, Any]:
        return self.summary.get("task") or {}

    @property
    def pair(self) -> bool:
        return len(self.task.get("text_fields") or ()) == 2

    @property
    def sample(self) -> str:
        return _SAMPLES.get(str(self.task.get("name")), "your text here")


def value(metric: str, number: float) -> str:
    """A metric as the tables show it: percent, except the mean squared error."""
    return f"{number:.4f}" if metric.split("/")[-1] == "mse" else f"{100 * number:.2f}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, rest = divmod(round(float(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _params(count: Any) -> str:
    if not isinstance(count, (int, float)):
        return "? parameters"
    return f"{count / 1e6:.1f}M parameters" if count >= 1e6 else f"{int(count):,} parameters"


def model_section(facts: Facts) -> str:
    s = facts.summary
    rows: list[list[str]] = []
    if s.get("command") == "distill":
        teacher_metric = ""
        if facts.teacher_run and facts.teacher_run.get("metrics"):
            main = str(facts.teacher_run.get("main_metric") or "")
            metric = next((k for k in facts.teacher_run["metrics"] if k.split("/")[-1] == main), "")
            if metric:
                teacher_metric = f", dev {metric} {value(metric, facts.teacher_run['metrics'][metric])}"
        soft = s.get("soft_labels")
        if soft:  # a teacher given as a file of soft labels (kdkit.data.soft_labels)
            rows.append(
                ["teacher", f"soft labels from the file `{Path(soft['file']).name}` (sha256 `{soft['sha256']}`)"]
            )
        else:
            rows.append(["teacher", f"`{s.get('teacher')}` ({_params(s.get('teacher_parameters'))}{teacher_metric})"])
        layers = facts.model_config.get("kdkit_copied_layers")
        built = f"; built from teacher layers {layers}" if layers else ""
        student = f"`{s.get('student')}`: {facts.model_config.get('num_hidden_layers', '?')} layer(s){built}"
        rows.append(["student", f"{student} ({_params(s.get('student_parameters'))})"])
        if s.get("teacher_parameters") and s.get("student_parameters"):
            ratio = s["student_parameters"] / s["teacher_parameters"]
            rows.append(["size", f"{100 * ratio:.0f}% of the teacher's parameters"])
    else:
        rows.append(["base model", f"`{s.get('base_model')}`"])
        rows.append(
            [
                "model",
                f"{facts.model_config.get('num_hidden_layers', '?')} layers ({_params(s.get('student_parameters'))})",
            ]
        )
    rows.append(["architecture", ", ".join(facts.model_config.get("architectures") or ["?"])])
    return "## Model\n\n" + _table(["", ""], rows)


def method_section(facts: Facts) -> str:
    s = facts.summary
    if s.get("command") == "finetune":
        intro = "Fine-tuned with the task loss alone (`kdkit finetune`, loss `ce`)."
    else:
        intro = f"Distilled with the `{s.get('loss')}` loss plugin (`kdkit distill --plugin {s.get('loss')}`)."
    rows = [
        [f"`{component}`", f"`{option}`", f"`{setting}`"]
        for component, options in (s.get("options") or {}).items()
        for option, setting in (options or {}).items()
    ]
    table = _table(["component", "option", "value"], rows) if rows else "No options."
    return f"## Method and options\n\n{intro}\n\n{table}"


def data_section(facts: Facts) -> str:
    task, s = facts.task, facts.summary
    data = (s.get("config") or {}).get("data") or {}
    if task.get("hub_config"):
        source = f"GLUE `{task['hub_config']}` (nyu-mll/glue)"
    else:
        files = [Path(str(data[k])).name for k in ("train_file", "validation_file") if data.get(k)]
        source = "custom data: " + ", ".join(f"`{name}`" for name in files)
    labels = task.get("label_names")
    rows = [
        ["task", f"`{task.get('name')}`" + (f": {task['description']}" if task.get("description") else "")],
        ["source", source],
        ["text fields", ", ".join(f"`{f}`" for f in task.get("text_fields") or [])],
        ["labels", ", ".join(f"`{label}`" for label in labels) if labels else "regression (one value)"],
        [
            "training examples",
            str((s.get("train") or {}).get("examples", "?"))
            + (f" (first {data['max_train_samples']})" if data.get("max_train_samples") else ""),
        ],
        *_sources_row(s),
        [
            "evaluated on",
            f"held-out {100 * float(data['holdout_fraction']):g}% of train"
            if data.get("holdout_fraction")
            else ", ".join(task.get("validation_splits") or ["validation"]),
        ],
        ["max length", f"{data.get('max_length', '?')} tokens (longer inputs are truncated)"],
    ]
    return "## Data\n\n" + _table(["", ""], rows)


def _sources_row(summary: dict[str, Any]) -> list[list[str]]:
    """The training examples by source, when a distillation added some without labels (run.json's ``examples``)."""
    counts = summary.get("examples") or {}
    if not counts.get("transfer") and not counts.get("augmented") and not summary.get("soft_labels"):
        return []
    soft = summary.get("soft_labels")
    teacher = f"the soft-label file `{Path(soft['file']).name}`" if soft else "the teacher"
    parts = [
        f"{counts.get('labelled', 0)} labelled",
        f"{counts.get('transfer', 0)} transfer",
        f"{counts.get('augmented', 0)} augmented",
    ]
    return [["examples by source", ", ".join(parts) + f" (transfer and augmented examples labelled by {teacher})"]]


def results_section(facts: Facts) -> str:
    metrics = facts.summary.get("metrics") or {}
    if not metrics:
        return ""
    teacher = (facts.teacher_run or {}).get("metrics") or {}
    headers = ["metric", "this model"] + (["teacher"] if teacher else [])
    rows = [
        [f"{key} {'' if key.split('/')[-1] == 'mse' else '(%)'}".strip(), value(key, number)]
        + ([value(key, teacher[key]) if key in teacher else "-"] if teacher else [])
        for key, number in metrics.items()
    ]
    main = facts.summary.get("main_metric")
    note = f"Validation metrics of the best checkpoint (selected by {main})." if main else ""
    return "## Results\n\n" + _table(headers, rows) + (f"\n\n{note}" if note else "")


def training_section(facts: Facts) -> str:
    s = facts.summary
    train, env = s.get("train") or {}, s.get("environment") or {}
    training = (s.get("config") or {}).get("training") or {}
    epochs = train.get("epochs")
    rows = [
        [
            "training time",
            duration(train.get("wall_time_s"))
            + (
                f" (+ {duration((s.get('teacher_cache') or {}).get('seconds'))} teacher signals)"
                if (s.get("teacher_cache") or {}).get("used")
                else ""
            ),
        ],
        [
            "steps",
            f"{train.get('steps', '?')} ({epochs:.2f} epochs)"
            if isinstance(epochs, float)
            else str(train.get("steps", "?")),
        ],
        ["batch size, learning rate", f"{training.get('batch_size', '?')}, {training.get('learning_rate', '?')}"],
        ["throughput", f"{train.get('examples_per_second', '?')} examples/s"],
        ["hardware", _hardware(env)],
        [
            "software",
            f"kdkit {s.get('kdkit_version', '?')}, torch {env.get('torch', '?')}, "
            f"transformers {env.get('transformers', '?')}",
        ],
        ["finished", str(s.get("finished_at", "?"))],
    ]
    return "## Training\n\n" + _table(["", ""], rows)


def curves_section(curves: str | None) -> str:
    if curves is None:
        return ""
    return (
        f"## Training curves\n\n![training curves: loss terms per step and the dev metric per evaluation]({curves})"
        "\n\nLeft: the loss terms logged every `logging_steps` (`loss` is their weighted sum). Right: the dev "
        "metric at each evaluation."
    )


def _python_text(facts: Facts) -> str:
    return json.dumps({"text": _PAIR[0], "text_pair": _PAIR[1]}) if facts.pair else json.dumps(facts.sample)


def use_pytorch(facts: Facts, model_path: str) -> str:
    return (
        "### transformers (PyTorch)\n\n```python\nfrom transformers import pipeline\n\n"
        f'classifier = pipeline("text-classification", model="{model_path}")\n'
        f"print(classifier({_python_text(facts)}))\n```"
    )


def _use_transformers_js(facts: Facts, export_path: str) -> str:
    """transformers.js: the text-classification pipeline; pairs through the tokenizer's text_pair (the
    pipeline takes single texts)."""
    parent, name = str(Path(export_path).parent), Path(export_path).name
    head = "### transformers.js (Node or the browser)\n\n```js\n"
    setup = f'env.allowRemoteModels = false;  // read the export from disk\nenv.localModelPath = "{parent}/";\n'
    if not facts.pair:
        return (
            head
            + 'import { env, pipeline } from "@huggingface/transformers";\n\n'
            + setup
            + f'const classify = await pipeline("text-classification", "{name}", {{ dtype: "q8" }});'
            + '  // "fp32": onnx/model.onnx\n'
            + f"console.log(await classify({json.dumps(facts.sample)}));\n```"
        )
    return (
        head
        + 'import { AutoModelForSequenceClassification, AutoTokenizer, env } from "@huggingface/transformers";\n\n'
        + setup
        + f'const tokenizer = await AutoTokenizer.from_pretrained("{name}");\n'
        + f'const model = await AutoModelForSequenceClassification.from_pretrained("{name}", {{ dtype: "q8" }});\n'
        + f"const inputs = tokenizer({json.dumps(_PAIR[0])}, "
        + f"{{ text_pair: {json.dumps(_PAIR[1])}, truncation: true }});\n"
        + "const scores = Array.from((await model(inputs)).logits.data);\n"
        + "console.log(model.config.id2label[scores.indexOf(Math.max(...scores))]);\n```"
    )


def use_onnx(facts: Facts, export_path: str) -> str:
    """optimum, transformers.js and kdkit predict on an export folder."""
    predict_args = f'"{_PAIR[0]}" "{_PAIR[1]}"' if facts.pair else f'"{facts.sample}"'
    return (
        "### optimum-onnx (onnxruntime)\n\n```python\n"
        "from optimum.onnxruntime import ORTModelForSequenceClassification\n"
        "from transformers import AutoTokenizer, pipeline\n\n"
        f'model = ORTModelForSequenceClassification.from_pretrained("{export_path}")  # onnx/model.onnx\n'
        f'# int8: from_pretrained("{export_path}", file_name="model_quantized.onnx")\n'
        f'tokenizer = AutoTokenizer.from_pretrained("{export_path}")\n'
        'classifier = pipeline("text-classification", model=model, tokenizer=tokenizer)\n'
        f"print(classifier({_python_text(facts)}))\n```\n\n"
        + _use_transformers_js(facts, export_path)
        + "\n\n### kdkit predict (onnxruntime + tokenizers, no torch)\n\n"
        f"```bash\nkdkit predict {export_path} {predict_args}\n```\n\n"
        "Versions: optimum-onnx 0.1 with transformers 4.57 (optimum-onnx pins transformers < 4.58); "
        "@huggingface/transformers 4.3 (transformers.js, onnxruntime-node 1.30). Texts longer than the max "
        "length: transformers.js cuts the token list, its last `[SEP]` included (see kdkit's docs/deploy.md)."
    )


def run_sections(name: str, facts: Facts, curves: str | None) -> list[str]:
    """The run card's body (``best/README.md``)."""
    s = facts.summary
    what = "student distilled" if s.get("command") == "distill" else "teacher fine-tuned"
    title = (
        f"# {name}\n\nA {facts.task.get('name')} classifier: a {what} with [kdkit](https://pypi.org/project/kdkit/)."
    )
    export = f"{facts.location}/onnx"
    how = (
        "## How to use\n\n"
        + use_pytorch(facts, f"{facts.location}/best")
        + f"\n\nFor ONNX, export it first (validated against PyTorch, fp32 and int8):\n\n"
        f"```bash\nkdkit export {facts.location} --onnx --quantize int8\n```\n\n" + use_onnx(facts, export)
    )
    return [
        title,
        model_section(facts),
        method_section(facts),
        data_section(facts),
        results_section(facts),
        training_section(facts),
        curves_section(curves),
        how,
    ]


def export_section(manifest: dict[str, Any]) -> str:
    """Engines side by side (the export's own evaluation), parity, files."""
    evaluation = manifest.get("evaluation") or {}
    metrics = evaluation.get("metrics") or {}
    engines = [e for e in _ENGINES if e in metrics]
    rows = [
        [f"{key}{'' if key.split('/')[-1] == 'mse' else ' (%)'}"] + [value(key, metrics[e][key]) for e in engines]
        for key in metrics.get("pytorch", {})
    ]
    sizes = manifest.get("sizes") or {}
    size_keys = {"pytorch": "pytorch", "onnx_fp32": "fp32", "onnx_int8": "int8"}
    rows.append(["file size (MB)"] + [f"{sizes.get(size_keys[e], 0) / 1e6:.1f}" for e in engines])
    parity = manifest.get("parity") or {}
    exporter = manifest.get("exporter") or {}
    files = [
        f"`{info['file']}` ({info['name']})"
        for info in ({"file": m["file"], "name": p} for p, m in (manifest.get("models") or {}).items())
    ]
    splits = ", ".join(f"{k} {v}" for k, v in (evaluation.get("splits") or {}).items())
    lines = [
        "## Export",
        "",
        _table(["metric"] + [_ENGINES[e] for e in engines], rows),
        "",
        f"Measured at export on {splits} examples. Exporter `{exporter.get('name')}`, opset "
        f"{exporter.get('opset')}; ONNX fp32 matches PyTorch within {parity.get('tolerance')} "
        f"(max |Δlogit| {parity.get('validation_max_abs_diff', 0):.2g} over the validation set). "
        f"Max length {manifest.get('max_length')} tokens. Models: {', '.join(files)}.",
    ]
    lines += [f"\n**Warning:** {note}" for note in manifest.get("warnings") or []]
    return "\n".join(lines)


def fidelity_section(report: FidelityReport | None) -> str:
    """What the export costs (``kdkit_fidelity.json``, :mod:`kdkit.records.fidelity`): the main metric, agreement
    with PyTorch and the teacher, calibration, latency, the int8 drop and the per-class changes."""
    if report is None:
        return ""
    headers, rows = engine_rows(report)
    lines = ["## Fidelity", "", _table(headers, rows), "", " ".join(summary_lines(report))]
    if report.calibration:
        lines[-1] += (
            " ECE: 15 equal-width bins of the top probability; temperature-scaled: each half of the dev set scaled by"
            " the temperature fitted on the other half."
        )
    lines[-1] += " All figures: `kdkit_fidelity.json`."
    headers, rows = class_rows(report)
    if rows:
        lines += ["", "Per class, ONNX fp32 → int8 (%, Δ in points):", "", _table(headers, rows)]
    return "\n".join(lines)


def export_sections(
    name: str, facts: Facts, manifest: dict[str, Any], curves: str | None, fidelity: FidelityReport | None = None
) -> list[str]:
    """The export card's body (``<export>/README.md``); ``fidelity``: its ``kdkit_fidelity.json``, if any."""
    source = (manifest.get("source") or {}).get("path", "?")
    title = (
        f"# {name} (ONNX)\n\nThe ONNX export of `{source}` by `kdkit export`, in the layout optimum-onnx and "
        "transformers.js load: `config.json`, the tokenizer, `onnx/model.onnx` (fp32) and "
        "`onnx/model_quantized.onnx` (int8, when exported), plus kdkit's manifest `kdkit_export.json`."
    )
    sections = [title, export_section(manifest), fidelity_section(fidelity)]
    if facts.summary.get("command"):
        sections += [
            model_section(facts),
            method_section(facts),
            data_section(facts),
            results_section(facts),
            training_section(facts),
        ]
    sections += [curves_section(curves), "## How to use\n\n" + use_onnx(facts, facts.location)]
    return sections


def _hardware(env: dict[str, Any]) -> str:
    """``cpu, bf16 (auto: the CPU has amx_bf16), 1 process(es)``: the device, the precision and why, processes."""
    precision = str(env.get("precision", "?"))
    if env.get("precision_reason"):
        precision += f" ({env['precision_reason']})"
    return f"{env.get('device', '?')}, {precision}, {env.get('world_size', 1)} process(es)"
