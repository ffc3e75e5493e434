"""Render the model card (README.md of a model repository) from `model_cards/model_card_template.md`.

The YAML header carries what the Hub indexes: `library_name`, `base_model` (both encoders), `datasets`, `tags`
(`custom_code`, `audio-text`, `hilbert-document-classification`, ...) and the cross-validated results as
`model-index` (no `pipeline_tag`: no built-in Hub pipeline matches; see `card_metadata`).
"""

from __future__ import annotations

import math
from pathlib import Path
from string import Template

import yaml

from hilbert_app.model_cards import template

METRIC_TYPES = {
    "macro_auc": "roc_auc",
    "macro_f1": "f1",
    "balanced_accuracy": "balanced_accuracy",
    "macro_auprc": "average_precision",
    "accuracy": "accuracy",
}
METRIC_NAMES = {
    "macro_auc": "macro ROC-AUC",
    "macro_f1": "macro F1",
    "balanced_accuracy": "balanced accuracy",
    "macro_auprc": "macro AUPRC",
    "accuracy": "accuracy",
}


def hub_base_model(source: dict) -> str | None:
    """The Hub id an encoder came from (offline PyPI copies map to their original Hub ids); None for local folders."""
    from hilbert_app.encoders import hub_equivalent

    name = source.get("name_or_path", "")
    if name.startswith("offline:"):
        return hub_equivalent(name)
    return None if Path(name).exists() or name.startswith(("/", ".")) else name


def model_index(model_name: str, summary: dict, dataset: str | None, protocol: str) -> list[dict]:
    results = []
    for task, metrics in summary.items():
        entries = []
        for key, metric_type in METRIC_TYPES.items():
            stat = metrics.get(key)
            if not stat or stat.get("mean") is None or (isinstance(stat["mean"], float) and math.isnan(stat["mean"])):
                continue
            entries.append(
                {
                    "type": metric_type,
                    "value": round(float(stat["mean"]), 4),
                    "name": f"{METRIC_NAMES[key]} ({protocol} mean; std {stat['std']:.4f})",
                }
            )
        results.append(
            {
                "task": {"type": "audio-classification", "name": f"Recording classification ({task})"},
                "dataset": {"name": dataset or "private dataset", "type": dataset or "private"},
                "metrics": entries,
            }
        )
    return [{"name": model_name, "results": results}]


def render_model_card(
    *,
    repo_id: str,
    config,
    summary: dict,
    num_runs: int,
    protocol: str,
    num_documents: int,
    dataset: str | None = None,
    data_description: str = "",
    training_description: str = "",
) -> str:
    """The model card text for a trained HILBERT model. `summary` is metrics.json's content."""
    sources = config.encoder_sources or {}
    base_models = [m for m in (hub_base_model(s) for s in sources.values()) if m]
    metadata = {
        "library_name": "transformers",
        # No `pipeline_tag`: the Hub's tags name its built-in pipelines, and none takes a recording with its
        # transcript (audio-classification takes audio alone, and its widget would fail on this model). The custom
        # pipeline is named in the tags and in config.json's `custom_pipelines`.
        "tags": [
            "custom_code",
            "audio-text",
            "hilbert",
            "multimodal",
            "long-audio",
            "document-classification",
            "hilbert-document-classification",
        ],
        "license": "apache-2.0",
    }
    if base_models:
        metadata["base_model"] = base_models
    if dataset:
        metadata["datasets"] = [dataset]
    metadata["model-index"] = model_index(repo_id.split("/")[-1], summary, dataset, protocol)
    rows = [
        f"| {key} | {s.get('name_or_path', '?')} ({s.get('model_type', '?')}) | {s.get('revision') or 'n/a'} | "
        f"`{(s.get('sha256') or '')[:16]}` |"
        for key, s in sources.items()
    ]
    table = ["| task | macro ROC-AUC | macro F1 | balanced accuracy | macro AUPRC |", "|---|---|---|---|---|"]
    for task, metrics in summary.items():
        table.append(
            f"| {task} | "
            + " | ".join(
                f"{metrics[m]['mean']:.3f} ± {metrics[m]['std']:.3f}"
                if metrics.get(m) and metrics[m].get("mean") is not None
                else "n/a"
                for m in ("macro_auc", "macro_f1", "balanced_accuracy", "macro_auprc")
            )
            + " |"
        )
    tasks = config.tasks
    return Template(template("model_card_template.md")).substitute(
        metadata=yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True).strip(),
        model_name=repo_id.split("/")[-1],
        classifier="Mixture-of-Experts" if config.classifier == "moe" else "MLP",
        task_summary=", ".join(f"`{t['name']}` ({t['type']}: {', '.join(t['id2label'].values())})" for t in tasks),
        encoder_rows="\n".join(rows) or "| n/a | | | |",
        data_description=data_description or "Not described.",
        training_description=training_description or "Not described.",
        num_runs=num_runs,
        protocol=protocol,
        results_table="\n".join(table),
        repo_id=repo_id,
        first_task=tasks[0]["name"],
        num_documents=num_documents,
    )


def card_metadata(card_text: str) -> dict:
    """Parse the YAML header of a card (used by tests and by the Hub push check)."""
    _, header, _ = card_text.split("---", 2)
    return yaml.safe_load(header)
