"""HILBERT's losses, one function per term, each with its formula.

Notation: B = batch of documents (the *global* batch when several processes train: see `gather_with_grad`);
z_a, z_t, z_j the audio, text and joint document embeddings; p(.) the projection to the contrastive space,
L2-normalised; s = exp(log_scale) = 1/tau the learnable logit scale. D_a, D_t: the documents that have audio /
text (at least one real segment of it), B_a = |D_a|, B_t = |D_t|. A document without text has no text embedding,
only the pooling's bias, the same vector for every such document: it must not enter the text terms (it would be
a positive pair that carries no information and a negative identical to the other text-less documents), and
likewise for audio. Each modality's terms are therefore computed on its own documents; a term over fewer than 2
documents is 0 (nothing to contrast or compare), keeps the graph and gives zero gradient.

Ships to the Hub with the model: imports only `torch` and the standard library.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def upcast(x: torch.Tensor) -> torch.Tensor:
    """Half-precision logits to float32 for a stable log-softmax; float32/float64 are kept as they are."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


# ---------------------------------------------------------------------------------------------- distributed
def distributed_world_size() -> int:
    """Number of processes in the default group, 1 when torch.distributed is not in use."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` `(B_r, ...)` from every process along dim 0, keeping the autograd graph.

    Why not `accelerator.gather`: it is not differentiable, so the other ranks' rows would be constants and each
    rank would only receive the gradient of its own rows' *direct* contribution. With
    `torch.distributed.nn.functional.all_gather`, the backward pass sums the gradient of every rank's copy of the
    loss into the rows each rank owns. Every rank computes the same global loss L, so that sum is
    world_size * dL/dx; DDP then averages gradients over ranks (divides by world_size), which leaves exactly the
    gradient of one process on the concatenated batch.

    Local batches of different sizes (the last batch of an epoch) are padded to the largest, gathered, and the
    padding is cut off again, so the result has sum_r B_r rows in rank order. Without distributed training this is
    the identity.
    """
    return _gather(x, differentiable=True)


def gather_without_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` `(B_r, ...)` from every process along dim 0, without gradient (ids, flags of any dtype)."""
    return _gather(x, differentiable=False)


def _gather(x: torch.Tensor, differentiable: bool) -> torch.Tensor:
    world = distributed_world_size()
    if world == 1:
        return x
    size = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    torch.distributed.all_gather(sizes, size)
    sizes = [int(s.item()) for s in sizes]
    longest = max(sizes)
    if x.shape[0] < longest:
        x = torch.cat([x, x.new_zeros((longest - x.shape[0], *x.shape[1:]))])
    if differentiable:
        parts = torch.distributed.nn.functional.all_gather(x)
    else:
        parts = [torch.empty_like(x) for _ in range(world)]
        torch.distributed.all_gather(parts, x.contiguous())
    return torch.cat([part[:n] for part, n in zip(parts, sizes)])


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over processes without gradient (used for loss normalisers, which are counts)."""
    if distributed_world_size() == 1:
        return x
    x = x.detach().clone()
    torch.distributed.all_reduce(x)
    return x


# --------------------------------------------------------------------------------------------- contrastive
def info_nce(
    query: torch.Tensor, key: torch.Tensor, logit_scale: torch.Tensor, extra_keys: torch.Tensor | None = None
) -> torch.Tensor:
    r"""One-directional InfoNCE (van den Oord et al. 2018) with in-batch negatives, and optionally extra ones.

        InfoNCE(q, k) = -1/B sum_i log( exp(s q_i.k_i) / sum_j exp(s q_i.k_j) ) = CE(s q k^T, I)

    With `extra_keys` m `(M, P)` (negatives from outside the batch, e.g. a memory of earlier batches), the
    denominator also sums over them: -1/B sum_i log( exp(s q_i.k_i) / (sum_j exp(s q_i.k_j) + sum_l exp(s q_i.m_l)) ).

    Args:
        query, key: `(B, P)` L2-normalised rows; row i of each is a positive pair.
        logit_scale: scalar s = 1/tau.
        extra_keys: `(M, P)` L2-normalised negatives for every query (None or M = 0: none).
    """
    if extra_keys is not None and extra_keys.shape[0] > 0:
        key = torch.cat([key, extra_keys.to(key.dtype)])
    logits = logit_scale * query @ key.T  # (B, B + M)
    targets = torch.arange(query.shape[0], device=query.device)
    return F.cross_entropy(logits, targets)


def symmetric_info_nce(
    x: torch.Tensor,
    y: torch.Tensor,
    logit_scale: torch.Tensor,
    extra_x: torch.Tensor | None = None,
    extra_y: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""InfoNCE_sym(x, y) = 1/2 [ CE(s x y^T, I) + CE(s y x^T, I) ] (CLIP's loss).

    `extra_x`, `extra_y` `(M, P)`: extra negatives of each side (x's queries also compete with `extra_y`, y's with
    `extra_x`), e.g. the same M memory documents' vectors in each space."""
    return 0.5 * (info_nce(x, y, logit_scale, extra_y) + info_nce(y, x, logit_scale, extra_x))


def skipped_term(*tensors: torch.Tensor) -> torch.Tensor:
    """A 0 that depends on `tensors`: a term left out keeps the autograd graph (a backward through a total made only
    of skipped terms still works) and gives every input exactly zero gradient."""
    return sum(t.sum() for t in tensors) * 0.0


def select_documents(present: torch.Tensor | None, *embeddings: torch.Tensor) -> tuple[list[torch.Tensor], int]:
    """The rows of `embeddings` (each `(B, ...)`) whose `present` `(B,)` is True, and their number (None = all)."""
    if present is None:
        return list(embeddings), embeddings[0].shape[0]
    present = present.bool()
    return [e[present] for e in embeddings], int(present.sum())


def symmetric_info_nce_on(
    x: torch.Tensor,
    y: torch.Tensor,
    logit_scale: torch.Tensor,
    present: torch.Tensor | None = None,
    extra: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, int]:
    r"""InfoNCE_sym(x, y) on the documents where `present` `(B,)` is True (None = all), and their number B_m.

    `extra`: `(extra_x, extra_y)`, each `(M, P)`, negatives from outside the batch (`symmetric_info_nce`). With
    fewer than 2 candidates in all (B_m + M < 2), or no document (B_m = 0), there is nothing to contrast: the term
    is 0 (`skipped_term`)."""
    (x_m, y_m), count = select_documents(present, x, y)
    extra_count = 0 if extra is None else extra[0].shape[0]
    if count < 1 or count + extra_count < 2:
        return skipped_term(x, y, logit_scale), count
    if extra_count == 0:
        return symmetric_info_nce(x_m, y_m, logit_scale), count
    return symmetric_info_nce(x_m, y_m, logit_scale, *extra), count


def reciprocal_dual_contrastive_loss(
    audio: torch.Tensor,
    text: torch.Tensor,
    joint: torch.Tensor,
    logit_scale: torch.Tensor,
    audio_present: torch.Tensor | None = None,
    text_present: torch.Tensor | None = None,
    audio_extra: tuple[torch.Tensor, torch.Tensor] | None = None,
    text_extra: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""HILBERT's joint-centric contrastive loss: each modality is aligned to the joint embedding, not to the other.

        L_dual = 1/2 [ InfoNCE_sym(p(z_a), p(z_j)) over D_a + InfoNCE_sym(p(z_t), p(z_j)) over D_t ]

    Args:
        audio, text, joint: `(B, P)` projected, L2-normalised embeddings.
        logit_scale: scalar s = 1/tau.
        audio_present, text_present: `(B,)` bool, the documents that have each modality (None = all). A term over
            fewer than 2 documents is 0.
        audio_extra, text_extra: extra negatives of each term (e.g. `ContrastiveMemory`): `(audio, joint)` vectors
            `(M_a, P)` of M_a other documents that have audio, and `(text, joint)` `(M_t, P)` of those that have text.
            With them, a term needs one document of the batch and two candidates in all.

    Returns:
        (L_dual, InfoNCE_sym(audio, joint), InfoNCE_sym(text, joint)); the two terms feed the MI estimates.
    """
    audio_joint, _ = symmetric_info_nce_on(audio, joint, logit_scale, audio_present, audio_extra)
    text_joint, _ = symmetric_info_nce_on(text, joint, logit_scale, text_present, text_extra)
    return 0.5 * (audio_joint + text_joint), audio_joint, text_joint


def direct_contrastive_loss(
    audio: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor, present: torch.Tensor | None = None
) -> torch.Tensor:
    r"""Baseline (CLIP/CLAP-style) alignment of the two modalities directly: L = InfoNCE_sym(p(z_a), p(z_t)), over
    the documents that have both (`present` `(B,)`, None = all; 0 with fewer than 2)."""
    return symmetric_info_nce_on(audio, text, logit_scale, present)[0]


# ------------------------------------------------------------------------------------------------- CKA
def linear_cka(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Linear centred kernel alignment (Kornblith et al. 2019) between two representations of the same B items.

        CKA(X, Y) = ||Y~^T X~||_F^2 / ( ||X~^T X~||_F ||Y~^T Y~||_F ),   X~, Y~ column-centred over the batch.

    Computed in the equivalent Gram form <K_x, K_y>_F / (||K_x||_F ||K_y||_F) with K = X~ X~^T `(B, B)`, which is
    cheaper when B < width and makes clear that X `(B, d1)` and Y `(B, d2)` may have different widths. CKA is
    invariant to orthogonal transforms and isotropic scaling of either argument; it lies in [0, 1].
    """
    x = x - x.mean(dim=0, keepdim=True)
    y = y - y.mean(dim=0, keepdim=True)
    gram_x, gram_y = x @ x.T, y @ y.T
    # Normalise each Gram matrix on its own: an eps added to the product of norms (which scales as the 4th power
    # of the embeddings' scale) would break the scale invariance for small embeddings. A zero Gram gives CKA 0.
    tiny = torch.finfo(gram_x.dtype).tiny
    return ((gram_x / gram_x.norm().clamp(min=tiny)) * (gram_y / gram_y.norm().clamp(min=tiny))).sum()


def cka_term(x: torch.Tensor, joint: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
    r"""1 - CKA(x, z_j) over the documents where `present` `(B,)` is True (None = all).

    With fewer than 2 documents there is no batch geometry to compare (centred embeddings are all zero): 0."""
    (x_m, joint_m), count = select_documents(present, x, joint)
    if count < 2:
        return skipped_term(x, joint)
    return 1.0 - linear_cka(x_m, joint_m)


def cka_loss(
    audio: torch.Tensor,
    text: torch.Tensor,
    joint: torch.Tensor,
    audio_present: torch.Tensor | None = None,
    text_present: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Structure preservation: the joint space keeps each modality's batch geometry.

        L_cka = (1 - CKA(z_a, z_j)) over D_a + (1 - CKA(z_t, z_j)) over D_t

    Args:
        audio `(B, d_a)`, text `(B, d_t)`, joint `(B, d_j)`: document embeddings (widths may differ).
        audio_present, text_present: `(B,)` bool, the documents that have each modality (None = all).

    A term over fewer than 2 documents is 0 (see `cka_term`).
    """
    return cka_term(audio, joint, audio_present) + cka_term(text, joint, text_present)


# -------------------------------------------------------------------------------------- MI balancing
def info_nce_mutual_information(info_nce_value: torch.Tensor, batch_size: int) -> torch.Tensor:
    r"""InfoNCE lower bound on mutual information (Poole et al. 2019): I(x; y) >= log B - InfoNCE(x, y).

    B is the number of documents the InfoNCE was computed on; with B < 2 the estimate is 0 (one document, or none,
    cannot tell anything about the dependence; the term itself is then 0 too: `symmetric_info_nce_on`)."""
    if batch_size < 2:
        return skipped_term(info_nce_value)
    return math.log(batch_size) - info_nce_value


def mi_balance_loss(
    audio_joint_info_nce: torch.Tensor,
    text_joint_info_nce: torch.Tensor,
    audio_documents: int,
    text_documents: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Keep either modality from dominating the joint embedding.

        I_a = log B_a - InfoNCE_sym(z_a, z_j) over D_a,  I_t = log B_t - InfoNCE_sym(z_t, z_j) over D_t,
        L_mi = (I_a - I_t)^2

    Each estimate uses its own number of documents: the bound is log B_m - InfoNCE_m for an InfoNCE over B_m
    documents (capped at log B_m), so a shared B would inflate the estimate of the modality that has fewer. When either
    modality has fewer than 2 documents its estimate is 0 (`info_nce_mutual_information`) and L_mi = 0: there is
    nothing to balance against (without this, a batch of text-less documents would have I_t = 0 exactly and
    L_mi would drag I_a to 0).

    Args:
        audio_joint_info_nce, text_joint_info_nce: `()` InfoNCE_sym of each modality with the joint embedding.
        audio_documents, text_documents: B_a, B_t, the numbers of documents those were computed on.

    Returns:
        (L_mi, I_a, I_t).
    """
    mi_audio = info_nce_mutual_information(audio_joint_info_nce, audio_documents)
    mi_text = info_nce_mutual_information(text_joint_info_nce, text_documents)
    if min(audio_documents, text_documents) < 2:
        return skipped_term(mi_audio, mi_text), mi_audio, mi_text
    return (mi_audio - mi_text) ** 2, mi_audio, mi_text


# ---------------------------------------------------------------------------------------------- MoE
def moe_load_balance_loss(gate_probs: torch.Tensor, top_k: int | None = None) -> torch.Tensor:
    r"""Load balancing of one gate (Fedus et al. 2021, Switch Transformer, eq. 4-6):

        L_moe = E * sum_e f_e P_e

    P_e: mean gate probability of expert e over the batch (carries the gradient); f_e: the fraction of the batch's
    dispatch that goes to e.

    * Sparse gate (1 <= k < E): f_e = (number of items whose k chosen experts include e) / (B k), counted from the
      top-k indices, without gradient: Switch's f for k = 1, its top-k generalisation for k > 1 (as GShard and
      transformers' `load_balancing_loss_func` count the top-k assignments).
    * Dense gate (k None or k >= E, the same routing): every expert processes every item, so a count is constant
      (f_e = 1/E gives L = sum_e P_e = 1 whatever the gate does: no gradient). What a dense gate dispatches to e is
      its weight, so f_e = P_e, and

          L_moe = E * sum_e P_e^2 = 1 + CV^2(P),   CV^2 = Var_e(P) / mean_e(P)^2 (population variance over experts)

      which is the importance loss of Shazeer et al. 2017 (squared coefficient of variation of the experts' total
      gate weight over the batch) plus 1, differentiable in full (through both factors).

    Both forms equal 1 when routing is uniform (the minimum of the dense form) and E when the gate collapses onto
    one expert (E/k for a top-k gate, whose f splits over its k choices).

    Args:
        gate_probs: `(B, E)` softmax gate probabilities (before top-k).
        top_k: experts used per item (None = dense gate).
    """
    num_experts = gate_probs.shape[-1]
    mean_prob = gate_probs.mean(dim=0)  # P, (E,)
    if top_k is None or top_k >= num_experts:
        return num_experts * (mean_prob * mean_prob).sum()
    chosen = gate_probs.topk(top_k, dim=-1).indices  # (B, k)
    counts = torch.zeros_like(gate_probs).scatter(-1, chosen, 1.0).sum(dim=0)  # (E,)
    fraction = counts / (gate_probs.shape[0] * top_k)  # f is built from indices: it carries no gradient
    return num_experts * (fraction * mean_prob).sum()


# ------------------------------------------------------------------------------------ classification
def focal_modulation(log_one_minus_p: torch.Tensor, gamma: float) -> torch.Tensor:
    r"""The focal factor (1 - p)^gamma computed as exp(gamma * log(1 - p)) from an accurate log(1 - p).

    Why not `(1 - p) ** gamma`: for 0 < gamma < 1 the derivative gamma (1 - p)^(gamma - 1) is infinite at p = 1
    (a saturated, correct prediction), and autograd multiplies it by d(1 - p)/dlogits = 0: NaN. The whole loss
    term -(1 - p)^gamma log p has a finite gradient there (it vanishes like (1 - p)^gamma); computing the factor
    from log(1 - p), whose gradient is bounded, keeps every intermediate gradient finite for every gamma >= 0.
    """
    return torch.exp(gamma * log_one_minus_p)


def classification_loss_terms(
    logits: torch.Tensor,
    labels: torch.Tensor,
    task_type: str,
    class_weights: torch.Tensor | None = None,
    focal_gamma: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Sum of per-item losses and the normaliser that turns it into the loss's mean.

    multiclass (logits `(B, C)`, C >= 2, labels `(B,)` int, -100 = no label):
        l_i = -w_{y_i} (1 - p_i)^gamma log p_i,  p_i = softmax(logits_i)[y_i];  normaliser = sum_i w_{y_i}
        (with gamma = 0 this is `F.cross_entropy(weight=w)`, focal loss of Lin et al. 2017 otherwise)
    binary (logits `(B, 1)` or `(B,)`, labels `(B,)` in {0, 1}, -100 = no label; class_weights = [pos_weight]):
        l_i = -(1 - p_t)^gamma [ w y log sigma(x) + (1 - y) log(1 - sigma(x)) ];  normaliser = number of labelled items
    multilabel (logits `(B, C)`, labels `(B, C)` in {0, 1}, rows with any negative label ignored; class_weights =
    per-class pos_weight): as binary, element-wise; normaliser = number of labelled elements.

    The focal factor is exp(gamma log(1 - p)) with log(1 - p) computed directly (multiclass: logsumexp of the other
    classes' log-probabilities; binary: log sigma(-x) for y = 1, log sigma(x) for y = 0), so gradients stay finite
    when a probability saturates, for every gamma >= 0 (`focal_modulation`). Unlabelled rows are replaced by
    constant zero logits before anything is computed: whatever they hold, they get exactly zero gradient.

    Returning the sum and the normaliser separately lets the model normalise by the *global* count when several
    processes train on batches of different content (see `HilbertForSequenceClassification`).
    """
    if task_type == "multiclass":
        valid = labels != -100
        safe_labels = labels.clamp(min=0)
        logits = torch.where(valid.unsqueeze(-1), upcast(logits), 0.0)  # (B, C); no gradient path from unlabelled rows
        log_probs = F.log_softmax(logits, dim=-1)
        target_log_prob = log_probs.gather(-1, safe_labels.unsqueeze(-1)).squeeze(-1)  # (B,)
        weight = class_weights[safe_labels] if class_weights is not None else torch.ones_like(target_log_prob)
        weight = weight * valid
        per_item = -target_log_prob
        if focal_gamma:
            is_target = F.one_hot(safe_labels, log_probs.shape[-1]).bool()
            log_rest = log_probs.masked_fill(is_target, float("-inf")).logsumexp(dim=-1)  # log(1 - p_y), (B,)
            per_item = per_item * focal_modulation(log_rest, focal_gamma)
        return (weight * per_item).sum(), weight.sum()
    if task_type in ("binary", "multilabel"):
        if task_type == "binary":
            logits = logits.reshape(-1)
            labels = labels.reshape(-1)
            valid = labels >= 0
        else:
            valid = (labels >= 0).all(dim=-1, keepdim=True).expand_as(labels)
        logits = torch.where(valid, upcast(logits), 0.0)  # no gradient path from unlabelled items
        targets = labels.clamp(min=0).to(logits.dtype)
        per_item = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=class_weights, reduction="none")
        if focal_gamma:
            # 1 - p_t = sigma(-x) for y = 1 and sigma(x) for y = 0, i.e. sigma((1 - 2y) x).
            log_one_minus_p_true = F.logsigmoid((1.0 - 2.0 * targets) * logits)
            per_item = per_item * focal_modulation(log_one_minus_p_true, focal_gamma)
        valid = valid.to(per_item.dtype)
        return (per_item * valid).sum(), valid.sum()
    raise ValueError(f"Unknown task type {task_type!r}: expected multiclass, binary or multilabel.")


def classification_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    task_type: str,
    class_weights: torch.Tensor | None = None,
    focal_gamma: float = 0.0,
) -> torch.Tensor:
    """Mean classification loss of one task (see `classification_loss_terms`); 0 when no item is labelled."""
    total, normaliser = classification_loss_terms(logits, labels, task_type, class_weights, focal_gamma)
    return total / normaliser.clamp(min=torch.finfo(total.dtype).tiny)
