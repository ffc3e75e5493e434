"""Demo step 5: load the trained model anywhere and classify raw recordings.

Only `transformers` is imported: the model, its processor and their code come from the saved folder
(`trust_remote_code=True`), exactly as for a user who downloads the model from the Hub.

    python scripts/demo_predict.py --model outputs/demo/model --corpus outputs/demo/corpus [--documents 3] [--show-text]
"""

import argparse
import csv
import sys
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoProcessor


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--corpus", required=True, type=Path, help="a raw corpus folder with metadata.csv")
    parser.add_argument("--documents", type=int, default=3)
    parser.add_argument(
        "--show-text",
        action="store_true",
        help="print the text of the most weighted segments (off by default: transcripts stay private)",
    )
    args = parser.parse_args(argv)

    model = AutoModelForSequenceClassification.from_pretrained(args.model, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(args.model, trust_remote_code=True)
    task = model.config.tasks[0]
    names = task["id2label"]
    with open(args.corpus / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))[: args.documents]
    for row in rows:
        document = processor.load_document(args.corpus / row["file_name"], args.corpus / row["transcript"])
        inputs, report = processor([document], return_report=True)
        with torch.no_grad():
            out = model(**inputs)
        probs = torch.softmax(out.task_logits[task["name"]][0], -1)
        best = int(probs.argmax())
        weights = out.joint_pooling_weights[0].mean(0)  # (S,): mean over pooling heads
        top = weights.topk(min(3, int(inputs["audio_segment_mask"].sum()))).indices.tolist()
        sources = report[0]["segment_sources"]
        print(
            f"{row['file_name']}: true {row['label']!r}, predicted {names[best]!r} "
            f"({', '.join(f'{names[i]} {p:.2f}' for i, p in enumerate(probs.tolist()))})"
        )
        for index in top:
            start, end = inputs["segment_times"][0, index].tolist()
            segment = document["segments"][sources[index]]
            text = f": {segment['text'][:80]!r}" if args.show_text else ""
            print(
                f"    weighs {weights[index]:.2f}: {start:6.1f}-{end:6.1f} s, "
                f"{segment.get('speaker') or 'unknown speaker'}{text}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
