"""Run under `accelerate launch --multi_gpu --num_processes 2`: gradients of a DDP-wrapped HILBERT on a split batch.

Each process takes its share of the documents (the split is given per rank, so unequal shares are tested too),
computes the composite loss, and backpropagates through DDP. Rank 0 saves the averaged gradients of every
trainable parameter and the mean of the ranks' losses, which tests/test_distributed.py compares with one process
on the whole batch.
"""

import argparse

import torch
from accelerate import Accelerator

import modeling_hilbert  # noqa: F401  (registers the Auto classes)
from modeling_hilbert import HilbertForSequenceClassification

parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True)
parser.add_argument("--inputs", required=True)
parser.add_argument("--splits", required=True, help="comma-separated sizes of rank 0's share, one run each")
parser.add_argument("--out", required=True)
parser.add_argument(
    "--memory-warmup",
    action="store_true",
    help="first run one forward of the same documents under other ids (+100), filling a contrastive memory",
)
args = parser.parse_args()

# Without a GPU, `--multi_gpu` only forms a gloo process group when the Accelerator is told it runs on the CPU.
accelerator = Accelerator(cpu=not torch.cuda.is_available())
assert accelerator.num_processes == 2, f"expected 2 processes, got {accelerator.num_processes}"
model = HilbertForSequenceClassification.from_pretrained(args.model, dtype=torch.float64)
model = accelerator.prepare(model)
model.train()
batch = torch.load(args.inputs, weights_only=True)
total = batch["labels"].shape[0]
results = {}
if args.memory_warmup:
    share = [(0, total // 2), (total // 2, total)][accelerator.process_index]
    warm = {k: v[share[0] : share[1]] for k, v in batch.items()}
    warm["document_ids"] = warm["document_ids"] + 100
    with torch.no_grad():
        model(**warm)
for split in (int(s) for s in args.splits.split(",")):
    bounds = [(0, split), (split, total)][accelerator.process_index]
    shard = {k: v[bounds[0] : bounds[1]] for k, v in batch.items()}
    model.zero_grad(set_to_none=True)
    out = model(**shard)
    accelerator.backward(out.loss)
    losses = accelerator.gather(out.loss.detach()[None])
    grads = {
        n: p.grad.detach().clone() for n, p in accelerator.unwrap_model(model).named_parameters() if p.requires_grad
    }
    results[split] = {"loss": losses.mean(), "grads": grads}
if accelerator.is_main_process:
    torch.save(results, args.out)
accelerator.wait_for_everyone()
