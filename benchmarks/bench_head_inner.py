"""Development protocol for the head's design and defaults: compare settings on inner folds only.

Every design choice of the head (initialisation, loss weights, epochs, ...) must be made without looking at the
outer held-out folds that the results tables report. This script scores candidate settings where selection would:
inside every outer training split, on grouped, stratified *inner* folds of that split (all of them, not one
split: with ~45 training documents, one inner validation set of ~11 is too noisy to compare designs). The outer
held-out documents are never passed to any run.

For each candidate (a JSON object of HilbertConfig switches and/or RunSettings fields), every outer training split
x every inner fold x every seed trains one head and evaluates it on the inner validation part after each epoch.
Printed and written to JSON:

* the mean inner macro ROC-AUC curve over epochs (mean over outer splits x inner folds x seeds);
* its best epoch and value, and the value at the last epoch;
* the mean-pooled audio+text logistic regression on the same inner folds (C chosen by nested inner CV on the
  inner training part), the reference any head must beat.

    python benchmarks/bench_head_inner.py --features outputs/demo-small/features \
        --candidate '{"name": "default"}' \
        --candidate '{"name": "lr 3e-3", "learning_rate": 0.003}' --epochs 15 --output /tmp/inner.json

Costs (inner folds x outer splits x seeds) trainings per candidate: 4 x 5 x 1 = 20 on the demo, ~5 s each on 2 cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    from hilbert_app.training import experiment, linear_baseline
    from hilbert_app.training.data import fold_splits
    from hilbert_app.training.run import features_experiment
    from hilbert_app.training.selection import epoch_scores
    from hilbert_app.training.settings import DataArguments
    from modeling_hilbert import HilbertConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", required=True, help="features dataset folder (extract_features.py output)")
    parser.add_argument("--candidate", action="append", required=True, help="JSON: name + switches / run settings")
    parser.add_argument(
        "--config",
        type=Path,
        help="training YAML (e.g. configs/demo.yaml): its head settings and run settings are every candidate's "
        "starting point, as train.py would use them (default: HilbertConfig's and RunSettings' defaults)",
    )
    parser.add_argument("--epochs", type=float, default=15)
    parser.add_argument("--folds", type=int, default=5, help="outer folds (the dataset's fold column)")
    parser.add_argument("--inner-folds", type=int, default=4)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--outer", default=None, help="comma-separated outer splits to use (default: all)")
    parser.add_argument("--output", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one "Writing model shards" bar per checkpoint would bury the results

    data, _ = features_experiment(DataArguments(features=args.features), None)
    splits = fold_splits(data.dataset, args.folds, seed=0)
    outer = range(len(splits)) if args.outer is None else [int(k) for k in args.outer.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    task = data.tasks[0]
    labels = data.labels(task["name"])
    groups = np.asarray(data.dataset["group"])
    head_defaults = {name: spec["default"] for name, spec in HilbertConfig.head_settings().items()}
    run_fields = {f.name for f in dataclasses.fields(experiment.RunSettings)}
    base_run = {}
    if args.config is not None:
        import yaml

        from hilbert_app.training.settings import head_settings

        yaml_settings = yaml.safe_load(args.config.read_text()) or {}
        head_defaults.update(head_settings(yaml_settings))
        skip = ("num_train_epochs", "select")  # --epochs sets the first; one run never selects
        base_run = {k: v for k, v in yaml_settings.items() if k in run_fields and k not in skip}

    # The inner folds of every outer training split, fixed for all candidates: (outer k, inner j, seed) -> indices.
    inner = {}
    for k in outer:
        train_indices = splits[k][0]
        for seed in seeds:
            for j, (a, b) in enumerate(
                linear_baseline.inner_splits(labels[train_indices], groups[train_indices], args.inner_folds, seed)
            ):
                inner[(k, j, seed)] = (train_indices[a], train_indices[b])

    results = {"features": args.features, "outer_splits": list(outer), "seeds": seeds, "candidates": {}}
    # References: the linear baselines on the same inner folds (C by nested CV on the inner training part). Every
    # modality set, so that a unimodal candidate can be read against the linear model on the same features.
    results["linear"] = {}
    for name, modalities in linear_baseline.LINEAR_VARIANTS.items():
        x = linear_baseline.mean_pooled_features(data.dataset, modalities)
        aucs = []
        for (_, _, seed), (tr, va) in inner.items():
            c = linear_baseline.select_c(x[tr], labels[tr], groups[tr], task, seed)["C"]
            probs = linear_baseline.predict_task(x[tr], labels[tr], x[va], task, c, seed)
            aucs.append(linear_baseline._score(labels[va], probs, task))
        results["linear"][name] = {"mean": float(np.nanmean(aucs)), "std": float(np.nanstd(aucs)), "n": len(aucs)}
        print(f"{name} (inner): {np.nanmean(aucs):.3f} ± {np.nanstd(aucs):.3f}", flush=True)
    results["linear_audio_text"] = results["linear"]["mean-pooled audio+text + LR"]

    for text in args.candidate:
        spec = json.loads(text)
        name = spec.pop("name", text)
        run = {**base_run, **{k: v for k, v in spec.items() if k in run_fields}}
        settings = experiment.RunSettings(num_train_epochs=args.epochs, **{**run, "report_to": []})
        switches = {k: v for k, v in spec.items() if k not in run_fields}
        curves, started = [], time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            for n, ((_, _, seed), (tr, va)) in enumerate(inner.items()):
                _, result = experiment.train_run(
                    data, dict(head_defaults), switches, tr, va, seed, Path(tmp) / f"{n}", settings
                )
                curves.append([s["macro_auc"] for s in epoch_scores(result["log_history"], [task["name"]])])
        length = min(len(c) for c in curves)
        curve = np.nanmean(np.array([c[:length] for c in curves]), axis=0)
        spread = np.nanstd(np.array([c[:length] for c in curves]), axis=0)
        best = int(np.nanargmax(curve))
        results["candidates"][name] = {
            "spec": spec,
            "curve": curve.tolist(),
            "std": spread.tolist(),
            "best_epoch": best + 1,
            "best": float(curve[best]),
            "last": float(curve[-1]),
            "seconds": time.perf_counter() - started,
            # per (outer split, inner fold, seed) run, in the same order for every candidate: for paired differences
            "runs": [c[:length] for c in curves],
        }
        print(
            f"{name:>40}: best {curve[best]:.3f} at epoch {best + 1}, last {curve[-1]:.3f} "
            f"(curve {' '.join(f'{v:.2f}' for v in curve)}) [{time.perf_counter() - started:.0f} s]",
            flush=True,
        )
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
