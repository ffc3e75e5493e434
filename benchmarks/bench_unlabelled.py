"""Do unlabelled recordings help? The same labelled documents and folds, trained without and with the others.

A clinic has many more recordings than labels. This benchmark takes a features dataset, hides the labels of a
fraction of each fold's documents (stratified by fold and class, deterministic), and writes two datasets:

* `labelled-only/`: the hidden documents removed;
* `with-unlabelled/`: the hidden documents kept, unlabelled (ClassLabel's -1), as `build_dataset.py
  --allow-unlabelled` would store them.

It then runs `train.py` on each with the same configuration and variants (the dataset's own folds, so both have
the same labelled training and held-out documents), and reports every variant's mean macro ROC-AUC in both and the
paired difference (with - without, same fold and seed). Rows without label-free terms (the logistic regressions,
concat + MLP, unimodal heads) never see unlabelled documents: their difference must be exactly 0, a check of the
protocol. Nothing is chosen on the held-out folds: the hidden documents come from every fold, and the held-out
part of a fold is its labelled documents in both datasets.

    python benchmarks/bench_unlabelled.py --features outputs/demo-small/features --output-dir /tmp/unlabelled \\
        --hide 0.5 -- --config configs/demo.yaml --seeds 0 \\
        --variants "mean-pooled audio+text + LR,concat + MLP,HILBERT,HILBERT (alignment always on)"

Everything after `--` goes to train.py (`--no_final_model --report-to none` are added).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def hidden_documents(folds: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """`(N,)` bool: in every (fold, class) stratum, round(fraction * n) documents chosen at random, at least one
    left labelled."""
    rng = np.random.default_rng(seed)
    hide = np.zeros(len(labels), dtype=bool)
    for fold in np.unique(folds):
        for label in np.unique(labels):
            members = np.where((folds == fold) & (labels == label))[0]
            count = min(int(round(fraction * len(members))), len(members) - 1)
            if count > 0:
                hide[rng.choice(members, size=count, replace=False)] = True
    return hide


def write_variants(features: Path, output_dir: Path, fraction: float, seed: int) -> dict:
    import datasets

    split = datasets.load_from_disk(str(features))["train"]
    labels, folds = np.asarray(split["label"]), np.asarray(split["fold"])
    if (labels < 0).any():
        raise SystemExit(f"{features} already has unlabelled documents; pass a fully labelled features dataset.")
    hide = hidden_documents(folds, labels, fraction, seed)
    paths = {"labelled-only": output_dir / "labelled-only", "with-unlabelled": output_dir / "with-unlabelled"}
    for name, path in paths.items():
        if path.exists():
            shutil.rmtree(path)
        if name == "labelled-only":
            part = split.select(np.where(~hide)[0])
        else:
            part = split.map(lambda row, i: {"label": -1 if hide[i] else row["label"]}, with_indices=True)
        datasets.DatasetDict({"train": part}).save_to_disk(str(path))
        shutil.copy(features / "hilbert_features.json", path / "hilbert_features.json")
    return {"documents": len(labels), "hidden": int(hide.sum()), "hidden_ids": list(np.asarray(split["id"])[hide])}


def fold_scores(run_dir: Path) -> dict[str, dict[tuple[int, int], float]]:
    """{variant: {(fold, seed): macro ROC-AUC}} from train.py's baselines.json."""
    baselines = json.loads((run_dir / "baselines.json").read_text())
    out = {}
    for variant, tasks in baselines.items():
        stat = tasks["label"]["macro_auc"]
        out[variant] = dict(enumerate(stat["folds"]))
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    own, train_args = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", type=Path, required=True, help="a fully labelled features dataset folder")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--hide", type=float, default=0.5, help="fraction of each fold x class to unlabel (0.5)")
    parser.add_argument("--seed", type=int, default=0, help="which documents are hidden")
    args = parser.parse_args(own)
    if not 0 < args.hide < 1:
        raise SystemExit(f"--hide must be in (0, 1), got {args.hide}")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    info = write_variants(args.features, args.output_dir, args.hide, args.seed)
    print(f"{info['hidden']} of {info['documents']} documents unlabelled", flush=True)
    scores = {}
    for name in ("labelled-only", "with-unlabelled"):
        out = args.output_dir / f"run-{name}"
        command = [
            sys.executable,
            str(REPO / "train.py"),
            "--features",
            str(args.output_dir / name),
            "--output-dir",
            str(out),
            "--no_final_model",
            "--report-to",
            "none",
            *train_args,
        ]
        print(f"[{name}] " + " ".join(command), flush=True)
        subprocess.run(command, check=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
        scores[name] = fold_scores(out)
    rows = []
    for variant in scores["labelled-only"]:
        without, with_ = scores["labelled-only"][variant], scores["with-unlabelled"][variant]
        pairs = [with_[k] - without[k] for k in without if k in with_]
        rows.append(
            {
                "variant": variant,
                "labelled_only": float(np.mean(list(without.values()))),
                "with_unlabelled": float(np.mean(list(with_.values()))),
                "difference_mean": float(np.mean(pairs)),
                "difference_std": float(np.std(pairs)),
                "better": int(sum(p > 0 for p in pairs)),
                "worse": int(sum(p < 0 for p in pairs)),
                "pairs": len(pairs),
            }
        )
    lines = [
        f"{info['hidden']} of {info['documents']} documents unlabelled (--hide {args.hide}, seed {args.seed}).",
        "",
        "| variant | labelled only | with unlabelled | paired difference | better / worse |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['labelled_only']:.3f} | {r['with_unlabelled']:.3f} | "
            f"{r['difference_mean']:+.3f} ± {r['difference_std']:.3f} | {r['better']} / {r['worse']} of {r['pairs']} |"
        )
    summary = "\n".join(lines)
    print(summary)
    (args.output_dir / "summary.md").write_text(summary + "\n")
    (args.output_dir / "summary.json").write_text(json.dumps({"info": info, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
