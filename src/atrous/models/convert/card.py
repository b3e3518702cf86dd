"""Model cards: the ``README.md`` that :func:`~.registry.save_pretrained` writes beside
``config.json`` and ``model.safetensors``, in the Hugging Face Hub's conventions.

The card opens with the Hub's YAML front matter (``library_name: atrous``, ``pipeline_tag:
image-segmentation``, the licence, datasets, tags and the results as a ``model-index``, each
metric with its evaluation protocol: split, output stride, scales, flip). With
``huggingface_hub`` installed (extra ``atrous[hub]``) its own ``ModelCardData`` / ``EvalResult``
write the front matter; without it the same keys are written with pyyaml. The body says what
the model is, its results, its preprocessing and how to load it with
:func:`~.registry.from_pretrained`.

:func:`metrics_from_run` reads a training run's folder (``metrics.json``, ``train_log.jsonl``)
into the ``metrics`` and ``protocol`` that ``save_pretrained`` takes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ...errors import CheckpointError
from ..spec import builder_parameters

CARD = "README.md"
MARK = "<!-- atrous-model-card: push_to_hub rewrites this file; delete this line to keep edits -->"
"""The first line after the front matter of a card atrous wrote: :func:`write_card` replaces
such a card (``push_to_hub`` puts the repo id in its usage snippet) and leaves any other
``README.md`` alone."""

METRICS: dict[str, tuple[str, str]] = {
    "miou": ("mean_iou", "mIoU"),
    "pq": ("panoptic_quality", "PQ"),
    "sq": ("segmentation_quality", "SQ"),
    "rq": ("recognition_quality", "RQ"),
    "pixel_accuracy": ("accuracy", "pixel accuracy"),
    "mean_accuracy": ("mean_accuracy", "mean accuracy"),
}
"""Metric keys ``save_pretrained`` takes (fractions, as atrous's evaluators write them) -> the
Hub metric id and the name shown; the card shows them in percent."""

PROTOCOL_KEYS = ("split", "output_stride", "scales", "flip", "step", "dataset")


def check_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """``metrics`` as ``{key: fraction}``: the keys of :data:`METRICS`; a whole
    ``metrics.json`` result also works (its ``panoptic`` section gives PQ, SQ, RQ; keys that
    are no card metric, such as per-class lists, are skipped)."""
    if not metrics:
        return {}
    flat = dict(metrics)
    panoptic = flat.pop("panoptic", None)
    if isinstance(panoptic, Mapping):
        flat.update({k: panoptic[k] for k in ("pq", "sq", "rq") if k in panoptic})
    whole = "iou" in flat or "classes" in flat or panoptic is not None
    out: dict[str, float] = {}
    for key, value in flat.items():
        if key not in METRICS:
            if whole:
                continue
            raise ValueError(f"metrics: unknown key {key!r}; card metrics: {', '.join(METRICS)}")
        if value is None or isinstance(value, (list, dict)):
            continue
        number = float(value)
        if not (math.isfinite(number) and 0.0 <= number <= 1.0):
            raise ValueError(
                f"metrics[{key!r}] = {value!r}: give fractions in [0, 1] as atrous's evaluators "
                "write them (the card shows percent)"
            )
        out[key] = number
    return out


def check_protocol(protocol: Mapping[str, Any] | None) -> dict[str, Any]:
    """The evaluation protocol with plain values: ``split``, ``output_stride``, ``scales``
    (default ``[1.0]``), ``flip`` (default False), optionally ``step`` and ``dataset`` (the
    dataset id of the results; default the first of ``datasets``)."""
    protocol = dict(protocol or {})
    unknown = set(protocol) - set(PROTOCOL_KEYS)
    if unknown:
        raise ValueError(
            f"protocol: unknown key(s) {', '.join(sorted(unknown))}; "
            f"keys: {', '.join(PROTOCOL_KEYS)}"
        )
    out: dict[str, Any] = {k: protocol[k] for k in PROTOCOL_KEYS if protocol.get(k) is not None}
    out["scales"] = [float(s) for s in protocol.get("scales") or (1.0,)]
    out["flip"] = bool(protocol.get("flip", False))
    if "output_stride" in out:
        out["output_stride"] = int(out["output_stride"])
    return out


def card_settings(
    *,
    metrics: Mapping[str, Any] | None,
    protocol: Mapping[str, Any] | None,
    license: str,
    datasets: Sequence[str] | str | None,
    tags: Sequence[str] | str | None,
    output_stride: int | None,
) -> dict[str, Any]:
    """What the card says beyond the model itself, checked, as plain data (``save_pretrained``
    keeps it in ``config.json`` under ``"card"``, so ``push_to_hub`` can write the card again).
    ``output_stride`` fills the protocol's when it names none (the model's own)."""
    checked = check_protocol(protocol)
    if output_stride is not None:
        checked.setdefault("output_stride", int(output_stride))
    return {
        "license": str(license),
        "datasets": [datasets] if isinstance(datasets, str) else list(datasets or []),
        "tags": [tags] if isinstance(tags, str) else list(tags or []),
        "metrics": check_metrics(metrics),
        "protocol": checked,
    }


def _model_facts(config: Mapping[str, Any]) -> dict[str, Any]:
    spec = config["model_spec"]
    name, kwargs = spec["name"], spec.get("kwargs", {})
    params = builder_parameters(name)

    def value(key: str) -> Any:
        if kwargs.get(key) is not None:
            return kwargs[key]
        param = params.get(key)
        return None if param is None or param.default is param.empty else param.default

    return {
        "builder": name,
        "backbone": value("backbone"),
        "output_stride": value("output_stride"),
        "wrappers": [w[0] for w in spec.get("wrappers", [])],
        "classes": list(config.get("classes", [])),
    }


def _protocol_text(protocol: Mapping[str, Any]) -> str:
    parts = [protocol.get("split", "")]
    if protocol.get("output_stride"):
        parts.append(f"OS{protocol['output_stride']}")
    scales = protocol.get("scales", [1.0])
    parts.append(
        "single scale" if list(scales) == [1.0] else "scales " + "/".join(f"{s:g}" for s in scales)
    )
    if protocol.get("flip"):
        parts.append("flip")
    return ", ".join(p for p in parts if p)


def _results(card: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One record per metric, in ``huggingface_hub.EvalResult``'s fields."""
    protocol = card["protocol"]
    dataset = protocol.get("dataset") or (card["datasets"][0] if card["datasets"] else "custom")
    panoptic = any(k in card["metrics"] for k in ("pq", "sq", "rq"))
    args = {k: protocol[k] for k in ("output_stride", "scales", "flip") if k in protocol}
    records = []
    for key, fraction in card["metrics"].items():
        metric_type, shown = METRICS[key]
        record = {
            "task_type": "image-segmentation",
            "task_name": "Panoptic Segmentation" if panoptic else "Semantic Segmentation",
            "dataset_type": dataset,
            "dataset_name": dataset,
            "dataset_split": protocol.get("split"),
            "metric_type": metric_type,
            "metric_value": round(100 * fraction, 2),
            "metric_name": f"{shown} ({_protocol_text(protocol)})",
            "metric_args": args or None,
        }
        records.append(_some(record))
    return records


def _some(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _model_index(model_name: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Hub's ``model-index`` for ``records`` (results grouped by task, dataset and split),
    written without ``huggingface_hub``."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in records:
        key = (r["task_type"], r["dataset_type"], r.get("dataset_split"))
        dataset = {"name": r["dataset_name"], "type": r["dataset_type"], "split": key[2]}
        task = {"type": r["task_type"], "name": r["task_name"]}
        group = groups.setdefault(key, {"task": task, "dataset": _some(dataset), "metrics": []})
        metric = {"type": r["metric_type"], "value": r["metric_value"], "name": r["metric_name"]}
        group["metrics"].append(_some({**metric, "args": r.get("metric_args")}))
    return [{"name": model_name, "results": list(groups.values())}]


def model_name(config: Mapping[str, Any]) -> str:
    """A name for the model: builder and backbone (``deeplabv3plus-mobilenetv2``)."""
    facts = _model_facts(config)
    return "-".join(str(p) for p in (facts["builder"], facts["backbone"]) if p)


def front_matter(config: Mapping[str, Any]) -> str:
    """The card's YAML front matter (without the ``---`` lines) for a ``save_pretrained``
    config holding ``"card"`` settings; by ``huggingface_hub.ModelCardData`` when installed."""
    facts = _model_facts(config)
    card = {"license": "apache-2.0", "datasets": [], "tags": [], "metrics": {}, "protocol": {}}
    card.update(config.get("card") or {})
    panoptic = facts["builder"] == "panoptic_deeplab" or "pq" in card["metrics"]
    kind = "panoptic-segmentation" if panoptic else "semantic-segmentation"
    tags = ["deeplab", kind, facts["builder"]]
    tags += [str(facts["backbone"])] if facts["backbone"] else []
    tags += [t for t in card["tags"] if t not in tags]
    name = model_name(config)
    records = _results(card)
    meta: dict[str, Any] = {
        "datasets": card["datasets"] or None,
        "library_name": "atrous",
        "license": card["license"],
        "pipeline_tag": "image-segmentation",
        "tags": tags,
    }
    try:
        from huggingface_hub import EvalResult, ModelCardData
    except ImportError:
        meta = {k: v for k, v in meta.items() if v is not None}
        if records:
            meta["model-index"] = _model_index(name, records)
        return yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip()
    data = ModelCardData(
        **meta,
        model_name=name if records else None,
        eval_results=[EvalResult(**r) for r in records] or None,
    )
    return data.to_yaml().strip()


def card_text(config: Mapping[str, Any], *, source: str) -> str:
    """The whole ``README.md``; the usage snippet loads the model from ``source`` (a directory
    or ``"hf-hub:owner/name"``)."""
    facts = _model_facts(config)
    card = {"metrics": {}, "protocol": {}, **(config.get("card") or {})}
    classes = facts["classes"]
    lines = [
        "---",
        front_matter(config),
        "---",
        MARK,
        "",
        f"# {model_name(config)}",
        "",
        f"A `{facts['builder']}` segmentation model for atrous (DeepLab on PyTorch), saved "
        "with `atrous.models.save_pretrained`.",
        "",
        "| | |\n|---|---|",
        f"| builder | `{facts['builder']}` |",
    ]
    if facts["backbone"]:
        lines.append(f"| backbone | `{facts['backbone']}` |")
    if facts["output_stride"]:
        lines.append(f"| output stride | {facts['output_stride']} |")
    if facts["wrappers"]:
        lines.append(f"| wrappers | {', '.join(f'`{w}`' for w in facts['wrappers'])} |")
    shown = ", ".join(f"{i} `{c}`" for i, c in enumerate(classes))
    lines += [f"| classes | {len(classes)}: {shown} |", ""]
    if card["metrics"]:
        p = card["protocol"]
        columns = {
            "split": p.get("split", ""),
            "output stride": p.get("output_stride", ""),
            "scales": ", ".join(f"{s:g}" for s in p.get("scales", [1.0])),
            "flip": "yes" if p.get("flip") else "no",
        }
        if p.get("step") is not None:
            columns["step"] = p["step"]
        if p.get("dataset"):
            columns = {"dataset": p["dataset"], **columns}
        lines += [
            "## Results",
            "",
            "| metric | value (%) | " + " | ".join(columns) + " |",
            "|---|---|" + "---|" * len(columns),
        ]
        for key, value in card["metrics"].items():
            cells = " | ".join(str(v) for v in columns.values())
            lines.append(f"| {METRICS[key][1]} | {100 * value:.2f} | {cells} |")
        lines.append("")
    mean = ", ".join(f"{m:g}" for m in config["mean"])
    std = ", ".join(f"{s:g}" for s in config["std"])
    lines += [
        "## Preprocessing",
        "",
        "RGB images of any size, 8-bit values scaled to [0, 1], then normalized per channel "
        f"with mean ({mean}) and std ({std}) (in `config.json`). The model pads its input to a "
        "multiple of its output stride itself and returns logits `[N, classes, H, W]` at the "
        "input's size. `atrous.Predictor` does the normalization and returns class ids at each "
        "image's own size.",
        "",
        "## Usage",
        "",
        "```python",
        "import atrous",
        "from atrous.models import from_pretrained",
        "",
        f"model, config = from_pretrained({json.dumps(source)})",
        'predictor = atrous.Predictor(model, mean=config["mean"], std=config["std"])',
        'labels = predictor.predict("photo.jpg")  # int64 [H, W] class ids at the image size',
        'print(sorted({config["classes"][i] for i in labels.unique().tolist()}))',
        "```",
        "",
        "Install with `pip install 'atrous[hub]'` to load from the Hub "
        '(`from_pretrained("hf-hub:owner/name")`). `Predictor` also takes `scales=` and '
        "`flip=` for the multi-scale, flipped evaluation protocol.",
        "",
    ]
    return "\n".join(lines)


def write_card(directory: str | Path, config: Mapping[str, Any], *, source: str) -> Path | None:
    """Write ``directory/README.md`` for ``config`` unless a README that atrous did not write
    (no :data:`MARK` line) is there: that one is kept (None)."""
    path = Path(directory) / CARD
    if path.exists() and MARK not in path.read_text(errors="replace").splitlines():
        return None
    path.write_text(card_text(config, source=source))
    return path


def _read_log(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a ``.jsonl`` file (a line cut short by a killed run is skipped)."""
    records = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return [r for r in records if isinstance(r, dict)]


def _score(metrics: Mapping[str, Any], metric: str) -> float:
    value: Any = metrics
    for part in metric.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    number = float(value) if isinstance(value, (int, float)) else -math.inf
    return number if math.isfinite(number) else -math.inf


def metrics_from_run(
    out_dir: str | Path, *, step: int | None = None, metric: str = "miou"
) -> dict[str, Any]:
    """The ``metrics`` and ``protocol`` of a training run's folder, for
    ``save_pretrained(..., **metrics_from_run(out_dir))``.

    The evaluations are the ``train_log.jsonl`` records with an ``"eval"`` key (a run with
    ``train.eval_every`` logs one per evaluation; every run logs its final one) and
    ``metrics.json`` (the final evaluation). ``step`` picks the evaluation at that step (the
    weights you publish: ``checkpoint.pt`` holds the last step); else the one the log marks
    best (a record with ``"best": true``, or a record whose ``"best"`` names a ``step``),
    else the highest ``metric`` (a dotted key reaches into sections: ``panoptic.pq``). The
    protocol is the run's validation: its split, single scale, no flip, at the model's output
    stride (``save_pretrained`` fills it from the model), unless the record names them.
    """
    out = Path(out_dir)
    log, final = out / "train_log.jsonl", out / "metrics.json"
    lines = _read_log(log)
    records = [r for r in lines if isinstance(r.get("eval"), Mapping)]
    if final.is_file():
        result = json.loads(final.read_text())
        if not any(r.get("step") == result.get("step") for r in records):
            final_record = {"step": result.get("step"), "split": result.get("split")}
            records.append({**final_record, "eval": result})
    if not records:
        raise CheckpointError(
            f"{out}: no evaluation found (metrics.json, or train_log.jsonl records with 'eval'); "
            "train with a validation split (data.val_split) or run atrous eval"
        )
    if step is None:
        flagged = [r for r in records if r.get("best") is True]
        markers = [r["best"] for r in lines if isinstance(r.get("best"), Mapping)]
        if not flagged and markers and "step" in markers[-1]:
            flagged = [r for r in records if r.get("step") == markers[-1]["step"]]
        chosen = (flagged or [max(records, key=lambda r: _score(r["eval"], metric))])[-1]
    else:
        found = [r for r in records if r.get("step") == step]
        if not found:
            steps = ", ".join(str(r.get("step")) for r in records)
            raise CheckpointError(f"{out}: no evaluation at step {step}; evaluated steps: {steps}")
        chosen = found[-1]
    result = chosen["eval"]
    protocol = {
        "split": chosen.get("split") or result.get("split"),
        "step": chosen.get("step"),
        "scales": result.get("scales") or chosen.get("scales") or [1.0],
        "flip": bool(result.get("flip", chosen.get("flip", False))),
        "output_stride": result.get("output_stride") or chosen.get("output_stride"),
    }
    return {
        "metrics": check_metrics(result),
        "protocol": {k: v for k, v in protocol.items() if v is not None},
    }
