"""How much of a row's score is seed luck? Average the class probabilities of its seeds' models, per fold.

A diagnostic of a finished `train.py --seeds 0,1,2` output folder, with no training. For every variant and outer
fold that has two or more seeds, it compares

* **single**: the mean over seeds of each seed's macro ROC-AUC on the fold (what `report.md` averages), and
* **seed ensemble**: the macro ROC-AUC of the seeds' mean class probabilities on the same held-out documents,

then averages over folds. A row whose models vary with the seed gains from the ensemble; a stable one does not. It
reads `runs/<variant>/fold<k>-seed<s>/run_result.json` and uses the same metric code as the runs
(`training.metrics.task_metrics`).

This is a diagnostic on the outer folds: it tells how much of a gap between rows is seed variance, and chooses
nothing. Adopting an ensemble as the protocol would have to be decided on the inner folds. Runs written before
2026-12-03 stored probabilities rounded to 6 decimals; their recomputed single scores may differ from the reported
ones by a few thousandths (ties at 0.0).

    python benchmarks/seed_ensemble.py --output-dir /work/exp/hard/model [--task label] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from hilbert_app.training.metrics import task_metrics

RUN = re.compile(r"fold(\d+)-seed(\d+)$")


def load_runs(variant_dir: Path, task: str) -> dict[int, list[dict]]:
    """{fold: [run predictions, one per seed]} for one variant folder; runs without the task are skipped."""
    folds: dict[int, list[dict]] = {}
    for path in sorted(variant_dir.glob("fold*-seed*/run_result.json")):
        match = RUN.match(path.parent.name)
        result = json.loads(path.read_text(encoding="utf-8"))
        if match is None or task not in result.get("predictions", {}):
            continue
        spec = result["tasks"][task]
        prediction = result["predictions"][task]
        order = np.argsort(prediction["index"], kind="stable")
        folds.setdefault(int(match.group(1)), []).append(
            {
                "index": np.asarray(prediction["index"])[order],
                "labels": np.asarray(prediction["labels"])[order],
                "probabilities": np.asarray(prediction["probabilities"], dtype=np.float64)[order],
                "task": {"name": task, "type": spec["type"], "id2label": dict(enumerate(spec["class_names"]))},
            }
        )
    return folds


def seed_ensemble(folds: dict[int, list[dict]]) -> dict:
    """Per fold: single (mean over seeds) and ensemble macro-AUC; then their means and the paired gain."""
    rows = []
    for fold, runs in sorted(folds.items()):
        if len(runs) < 2 or any(not np.array_equal(r["index"], runs[0]["index"]) for r in runs):
            continue  # one seed, or seeds that did not hold out the same documents: nothing to average
        task = runs[0]["task"]
        single = [task_metrics(r["labels"], r["probabilities"], task)["macro_auc"] for r in runs]
        mean_probs = np.mean([r["probabilities"] for r in runs], axis=0)
        ensemble = task_metrics(runs[0]["labels"], mean_probs, task)["macro_auc"]
        rows.append({"fold": fold, "seeds": len(runs), "single": float(np.mean(single)), "ensemble": float(ensemble)})
    if not rows:
        return {"folds": []}
    gain = np.array([r["ensemble"] - r["single"] for r in rows])
    return {
        "folds": rows,
        "single": float(np.mean([r["single"] for r in rows])),
        "ensemble": float(np.mean([r["ensemble"] for r in rows])),
        "gain_mean": float(gain.mean()),
        "gain_std": float(gain.std()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", required=True, type=Path, help="a train.py --output-dir with runs/")
    parser.add_argument("--task", default="label")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    runs_dir = args.output_dir / "runs"
    if not runs_dir.is_dir():
        parser.error(f"{runs_dir} does not exist: pass the --output-dir of a finished train.py run")
    results = {}
    # a variant's folder is its name with spaces as underscores; "w/o" makes a subfolder
    for variant_dir in sorted({p.parent.parent for p in runs_dir.glob("**/fold*-seed*/run_result.json")}):
        variant = str(variant_dir.relative_to(runs_dir)).replace("_", " ")
        summary = seed_ensemble(load_runs(variant_dir, args.task))
        if summary["folds"]:
            results[variant] = summary
    print(f"| row | folds | single seed | {'seed ensemble':>13} | gain (points, mean ± std over folds) |")
    print("|---|---|---|---|---|")
    for variant, s in results.items():
        print(
            f"| {variant} | {len(s['folds'])} | {s['single']:.3f} | {s['ensemble']:.3f} | "
            f"{100 * s['gain_mean']:+.1f} ± {100 * s['gain_std']:.1f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
