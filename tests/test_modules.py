"""Numbers of the leaf modules (pooling, cross-modal attention, MoE heads), each checked against a manual computation
with the module's own weights (numpy, float64) and against padding / masking invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modeling_hilbert.attention_hilbert import (
    CrossAttentionBlock,
    CrossModalAttentionLayer,
    MaskedMultiHeadAttention,
)
from modeling_hilbert.moe_hilbert import MixtureOfExpertsClassifier, MLPClassifier, top_k_gate
from modeling_hilbert.pooling_hilbert import SelfAttentivePooling, masked_mean

TIGHT = 1e-10


def npw(linear: torch.nn.Linear):
    """(W, b) of a Linear as float64 numpy arrays (b = 0 when the layer has no bias)."""
    w = linear.weight.detach().double().numpy()
    b = linear.bias.detach().double().numpy() if linear.bias is not None else np.zeros(w.shape[0])
    return w, b


def lin(x, linear):
    w, b = npw(linear)
    return x @ w.T + b


def np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


_erf = np.vectorize(math.erf)


def np_gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def np_layer_norm(x, ln: torch.nn.LayerNorm):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + ln.eps) * ln.weight.detach().double().numpy() + ln.bias.detach().double().numpy()


def seeded(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """float64, eval mode, with every parameter (LayerNorm affine included) re-drawn so nothing is a trivial 1 or 0."""
    gen = torch.Generator().manual_seed(seed)
    module = module.double().eval()
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * (0.5 if p.dim() > 1 else 0.2))
        for m in module.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.add_(1.0)  # gains around 1, not around 0
    return module


# ------------------------------------------------------------------------------------------ masked_mean
def test_masked_mean_matches_manual_mean():
    rng = np.random.default_rng(0)
    h = rng.standard_normal((4, 6, 3))
    mask = np.array(
        [
            [1, 1, 0, 1, 0, 0],
            [1, 1, 1, 1, 1, 1],
            [0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 1],
        ]
    )
    expected = np.zeros((4, 3))
    for n in range(4):
        real = [h[n, t] for t in range(6) if mask[n, t]]
        if real:
            expected[n] = sum(real) / len(real)
    for m in (
        torch.as_tensor(mask, dtype=torch.bool),
        torch.as_tensor(mask),
        torch.as_tensor(mask, dtype=torch.float64),
    ):
        got = masked_mean(torch.as_tensor(h), m)
        assert got.shape == (4, 3)
        assert np.abs(got.numpy() - expected).max() < TIGHT
        assert torch.equal(got[2], torch.zeros(3, dtype=torch.float64))  # no real position: zeros, not NaN
    assert np.abs(masked_mean(torch.as_tensor(h), None).numpy() - h.mean(axis=1)).max() < TIGHT


def test_masked_mean_empty_row_has_finite_gradient():
    h = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    masked_mean(h, mask).sum().backward()
    assert torch.isfinite(h.grad).all()
    assert torch.equal(h.grad[1], torch.zeros(4, 3, dtype=torch.float64))
    assert torch.allclose(h.grad[0, :2], torch.full((2, 3), 0.5, dtype=torch.float64))


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 6), min_size=1, max_size=5),
    extra=st.integers(0, 4),
    width=st.integers(1, 5),
    seed=st.integers(0, 2**31 - 1),
)
def test_masked_mean_padding_invariance_property(lengths, extra, width, seed):
    """Appending padded positions (any finite garbage) never changes the mean over the real ones."""
    rng = np.random.default_rng(seed)
    t = max(lengths) if max(lengths) > 0 else 1
    h = rng.standard_normal((len(lengths), t, width))
    mask = np.arange(t)[None, :] < np.array(lengths)[:, None]
    base = masked_mean(torch.as_tensor(h), torch.as_tensor(mask)).numpy()
    h_pad = np.concatenate([h, 1e6 * rng.standard_normal((len(lengths), extra, width))], axis=1)
    h_pad[~np.concatenate([mask, np.zeros((len(lengths), extra), bool)], axis=1)] = 1e6  # garbage in every padded slot
    mask_pad = np.concatenate([mask, np.zeros((len(lengths), extra), bool)], axis=1)
    got = masked_mean(torch.as_tensor(h_pad), torch.as_tensor(mask_pad)).numpy()
    assert np.abs(got - base).max() < 1e-12
    for n, length in enumerate(lengths):
        ref = h[n, :length].mean(axis=0) if length else np.zeros(width)
        assert np.abs(got[n] - ref).max() < 1e-12


# ---------------------------------------------------------------------------------- SelfAttentivePooling
def np_self_attentive(pool: SelfAttentivePooling, h: np.ndarray):
    """z = W_o vec(softmax_S(W_2 tanh(W_1 H^T)) H) + b for one document H (S, d) of real segments only."""
    w1, _ = npw(pool.score_hidden)
    w2, _ = npw(pool.score_heads)
    a = np_softmax(w2 @ np.tanh(w1 @ h.T), axis=-1)  # (r, S)
    m = a @ h  # (r, d)
    return lin(m.reshape(-1), pool.output), a


@pytest.fixture
def pool():
    torch.manual_seed(0)
    return seeded(SelfAttentivePooling(hidden_size=6, attention_hidden_size=5, num_heads=3, output_size=4), 1)


def test_self_attentive_pooling_matches_manual(pool):
    rng = np.random.default_rng(1)
    lengths = [5, 3, 1]
    h = rng.standard_normal((3, 5, 6))
    mask = np.arange(5)[None, :] < np.array(lengths)[:, None]
    z, w = pool(torch.as_tensor(h), torch.as_tensor(mask))
    assert z.shape == (3, 4) and w.shape == (3, 3, 5)
    for n, length in enumerate(lengths):
        z_ref, a_ref = np_self_attentive(pool, h[n, :length])
        assert np.abs(z[n].detach().numpy() - z_ref).max() < TIGHT
        assert np.abs(w[n, :, :length].detach().numpy() - a_ref).max() < TIGHT
        assert torch.equal(w[n, :, length:], torch.zeros(3, 5 - length, dtype=torch.float64))  # exactly 0
        assert np.abs(w[n].sum(-1).detach().numpy() - 1.0).max() < 1e-12
    # mask None = every segment real
    z_all, _ = pool(torch.as_tensor(h))
    assert np.abs(z_all[1].detach().numpy() - np_self_attentive(pool, h[1])[0]).max() < TIGHT
    # heads differ from each other (the test would notice a head-order / vec-order mistake)
    assert (w[0, 0] - w[0, 1]).abs().max().item() > 1e-3


@pytest.mark.parametrize("fill", ["garbage", "huge", "nan"])
def test_self_attentive_pooling_padded_contents_do_not_matter(pool, fill):
    rng = np.random.default_rng(2)
    real = rng.standard_normal((1, 3, 6))
    pad = {
        "garbage": 50 * rng.standard_normal((1, 4, 6)),
        "huge": np.full((1, 4, 6), 1e30),
        "nan": np.full((1, 4, 6), np.nan),
    }[fill]
    h = np.concatenate([real, pad], axis=1)
    mask = torch.tensor([[True] * 3 + [False] * 4])
    z_ref, w_ref = pool(torch.as_tensor(real))  # the same document without padded segments
    z, w = pool(torch.as_tensor(h), mask)
    assert torch.isfinite(z).all(), f"padded segments filled with {fill} leak into the pooled output: {z}"
    assert (z - z_ref).abs().max().item() < 1e-12
    assert (w[:, :, :3] - w_ref).abs().max().item() < 1e-12
    assert torch.equal(w[:, :, 3:], torch.zeros(1, 3, 4, dtype=torch.float64))


def test_self_attentive_pooling_empty_document(pool):
    rng = np.random.default_rng(3)
    h = torch.as_tensor(rng.standard_normal((2, 4, 6)))
    mask = torch.tensor([[True, True, False, False], [False] * 4])
    z, w = pool(h, mask)
    assert torch.isfinite(z).all()
    assert torch.equal(w[1], torch.zeros(3, 4, dtype=torch.float64))
    assert torch.equal(z[1], pool.output.bias.detach())  # W_o 0 + b
    # the other document is unaffected by its empty neighbour
    assert (z[0] - pool(h[:1, :2])[0][0]).abs().max().item() < 1e-12


# ------------------------------------------------------------------------------------ attention
def np_mha(att: MaskedMultiHeadAttention, queries: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """softmax(Q_h K_h^T / sqrt(d_h)) V_h per head, concatenated, then the output projection (one document)."""
    q, k, v = lin(queries, att.query), lin(keys, att.key), lin(keys, att.value)
    h = att.num_heads
    dh = q.shape[-1] // h
    heads = []
    for i in range(h):
        sl = slice(i * dh, (i + 1) * dh)
        p = np_softmax(q[:, sl] @ k[:, sl].T / math.sqrt(dh), axis=-1)
        heads.append(p @ v[:, sl])
    return lin(np.concatenate(heads, axis=-1), att.output)


@pytest.fixture
def attention():
    torch.manual_seed(0)
    return seeded(MaskedMultiHeadAttention(hidden_size=8, num_heads=2, dropout=0.5), 4)


def test_masked_attention_matches_manual(attention):
    rng = np.random.default_rng(5)
    q = rng.standard_normal((3, 4, 8))
    k = rng.standard_normal((3, 6, 8))
    lengths = [6, 2, 4]
    mask = np.arange(6)[None, :] < np.array(lengths)[:, None]
    out = attention(torch.as_tensor(q), torch.as_tensor(k), torch.as_tensor(mask)).detach().numpy()
    assert out.shape == (3, 4, 8)
    for n, length in enumerate(lengths):
        assert np.abs(out[n] - np_mha(attention, q[n], k[n, :length])).max() < TIGHT
    out_none = attention(torch.as_tensor(q), torch.as_tensor(k)).detach().numpy()
    assert np.abs(out_none[1] - np_mha(attention, q[1], k[1])).max() < TIGHT
    assert np.abs(out_none[1] - out[1]).max() > 1e-3  # the mask does change a document with padded keys


def test_masked_attention_ignores_padded_key_contents(attention):
    rng = np.random.default_rng(6)
    q = torch.as_tensor(rng.standard_normal((2, 3, 8)))
    k = torch.as_tensor(rng.standard_normal((2, 5, 8)))
    mask = torch.tensor([[True, True, False, False, False], [True, True, True, True, False]])
    base = attention(q, k, mask)
    garbage = k.clone()
    garbage[~mask] = torch.as_tensor(30 * rng.standard_normal((int((~mask).sum()), 8)))
    assert (attention(q, garbage, mask) - base).abs().max().item() < 1e-12
    # the same as giving only the real keys
    assert (base[0] - attention(q[:1], k[:1, :2])[0]).abs().max().item() < 1e-12


@pytest.mark.parametrize("fill", [float("nan"), float("inf"), 1e300])
def test_masked_attention_non_finite_padded_keys_do_not_leak(attention, fill):
    """Regression: the mask only adds -inf to scores, so NaN/inf/huge padded keys used to poison real queries."""
    rng = np.random.default_rng(8)
    q = torch.as_tensor(rng.standard_normal((2, 3, 8)))
    k = torch.as_tensor(rng.standard_normal((2, 5, 8)))
    mask = torch.tensor([[True, True, False, False, False], [True, True, True, True, False]])
    base = attention(q, k, mask)
    poisoned = k.clone()
    poisoned[~mask] = fill
    out = attention(q, poisoned, mask)
    assert torch.isfinite(out).all()
    assert (out - base).abs().max().item() < 1e-12


def test_masked_attention_document_without_keys_is_zero(attention):
    rng = np.random.default_rng(7)
    q = torch.as_tensor(rng.standard_normal((2, 3, 8)))
    k = torch.as_tensor(rng.standard_normal((2, 4, 8)))
    mask = torch.tensor([[True, False, True, False], [False] * 4])
    out = attention(q, k, mask)
    assert torch.equal(out[1], torch.zeros(3, 8, dtype=torch.float64))
    assert np.abs(out[0].detach().numpy() - np_mha(attention, q[0].numpy(), k[0, [0, 2]].numpy())).max() < TIGHT


def test_masked_attention_dropout_only_in_training(attention):
    rng = np.random.default_rng(8)
    q = torch.as_tensor(rng.standard_normal((2, 3, 8)))
    k = torch.as_tensor(rng.standard_normal((2, 4, 8)))
    attention.eval()
    first, second = attention(q, k), attention(q, k)
    assert torch.equal(first, second)
    assert np.abs(first[0].detach().numpy() - np_mha(attention, q[0].numpy(), k[0].numpy())).max() < TIGHT
    attention.train()
    torch.manual_seed(1)
    trained = attention(q, k)
    attention.eval()
    assert (trained - first).abs().max().item() > 1e-3  # dropout 0.5 is active in training


def test_masked_attention_rejects_indivisible_width():
    with pytest.raises(ValueError):
        MaskedMultiHeadAttention(hidden_size=10, num_heads=3)


def np_block(block: CrossAttentionBlock, x: np.ndarray, context: np.ndarray) -> np.ndarray:
    """Pre-LN residual block in numpy: x + Attn(LN(x), LN(c)); then x + FFN(LN(x)) (one document, real keys only)."""
    x = x + np_mha(block.attention, np_layer_norm(x, block.query_norm), np_layer_norm(context, block.context_norm))
    hidden = np_gelu(lin(np_layer_norm(x, block.ffn_norm), block.ffn[0]))
    return x + lin(hidden, block.ffn[3])


@pytest.fixture
def block():
    return seeded(
        CrossAttentionBlock(hidden_size=8, num_heads=2, intermediate_size=12, dropout=0.3, attention_dropout=0.3), 9
    )


def test_cross_attention_block_matches_manual(block):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 3, 8))
    c = rng.standard_normal((2, 5, 8))
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    out = block(torch.as_tensor(x), torch.as_tensor(c), mask).detach().numpy()
    assert np.abs(out[0] - np_block(block, x[0], c[0])).max() < TIGHT
    assert np.abs(out[1] - np_block(block, x[1], c[1, :2])).max() < TIGHT


def test_cross_attention_block_key_padding_invariance(block):
    rng = np.random.default_rng(11)
    x = torch.as_tensor(rng.standard_normal((1, 3, 8)))
    c = torch.as_tensor(rng.standard_normal((1, 4, 8)))
    base = block(x, c, None)
    padded = torch.cat([c, torch.as_tensor(40 * rng.standard_normal((1, 3, 8)))], dim=1)
    mask = torch.tensor([[True] * 4 + [False] * 3])
    assert (block(x, padded, mask) - base).abs().max().item() < 1e-12
    # padded queries do not change the real queries either
    x_padded = torch.cat([x, torch.as_tensor(40 * rng.standard_normal((1, 2, 8)))], dim=1)
    assert (block(x_padded, padded, mask)[:, :3] - base).abs().max().item() < 1e-12


@pytest.fixture
def layer():
    return seeded(
        CrossModalAttentionLayer(hidden_size=8, num_heads=2, intermediate_size=12, dropout=0.2, attention_dropout=0.2),
        12,
    )


def test_cross_modal_layer_both_directions_read_the_inputs(layer):
    rng = np.random.default_rng(13)
    audio = torch.as_tensor(rng.standard_normal((2, 4, 8)))
    text = torch.as_tensor(rng.standard_normal((2, 5, 8)))
    audio_mask = torch.tensor([[True] * 4, [True, True, True, False]])
    text_mask = torch.tensor([[True, True, False, False, False], [True] * 5])
    new_audio, new_text = layer(audio, text, audio_mask, text_mask)
    expected_audio = layer.audio_from_text(audio, text, text_mask)
    expected_text = layer.text_from_audio(text, audio, audio_mask)  # the ORIGINAL audio
    assert torch.equal(new_audio, expected_audio)
    assert torch.equal(new_text, expected_text)
    # sequential update (text reading the updated audio) would differ: the check above can tell them apart
    sequential = layer.text_from_audio(text, new_audio, audio_mask)
    assert (sequential - new_text).abs().max().item() > 1e-3
    # and against numpy
    for n, (la, lt) in enumerate([(4, 2), (3, 5)]):
        a, t_ = audio[n].numpy(), text[n].numpy()
        assert np.abs(new_audio[n].detach().numpy() - np_block(layer.audio_from_text, a, t_[:lt])).max() < TIGHT
        assert np.abs(new_text[n].detach().numpy() - np_block(layer.text_from_audio, t_, a[:la])).max() < TIGHT
    # text' depends on the audio input (a shift would not do: LayerNorm removes it)
    moved = layer(audio + torch.as_tensor(0.5 * rng.standard_normal((2, 4, 8))), text, audio_mask, text_mask)[1]
    assert (moved - new_text).abs().max().item() > 1e-3


def test_cross_modal_layer_padding_invariance(layer):
    rng = np.random.default_rng(14)
    audio = torch.as_tensor(rng.standard_normal((1, 3, 8)))
    text = torch.as_tensor(rng.standard_normal((1, 4, 8)))
    base_audio, base_text = layer(audio, text, None, None)
    audio_p = torch.cat([audio, torch.as_tensor(25 * rng.standard_normal((1, 2, 8)))], dim=1)
    text_p = torch.cat([text, torch.as_tensor(25 * rng.standard_normal((1, 3, 8)))], dim=1)
    am = torch.tensor([[True] * 3 + [False] * 2])
    tm = torch.tensor([[True] * 4 + [False] * 3])
    new_audio, new_text = layer(audio_p, text_p, am, tm)
    assert (new_audio[:, :3] - base_audio).abs().max().item() < 1e-12
    assert (new_text[:, :4] - base_text).abs().max().item() < 1e-12


# ------------------------------------------------------------------------------------------------ MoE
def test_top_k_gate():
    probs = torch.tensor([[0.1, 0.5, 0.15, 0.25], [0.4, 0.3, 0.2, 0.1]], dtype=torch.float64)
    got = top_k_gate(probs, 2)
    expected = torch.tensor([[0, 0.5 / 0.75, 0, 0.25 / 0.75], [0.4 / 0.7, 0.3 / 0.7, 0, 0]], dtype=torch.float64)
    assert (got - expected).abs().max().item() < 1e-15
    assert torch.equal(top_k_gate(probs, None), probs)
    assert torch.equal(top_k_gate(probs, 4), probs)
    assert torch.equal(top_k_gate(probs, 7), probs)
    one = top_k_gate(probs, 1)  # Switch Transformer: the selected expert's raw probability, not renormalised
    assert torch.equal(one, torch.tensor([[0, 0.5, 0, 0], [0.4, 0, 0, 0]], dtype=torch.float64))
    rng = np.random.default_rng(15)
    p = np_softmax(rng.standard_normal((20, 6)))
    for k in (1, 2, 3, 5):
        g = top_k_gate(torch.as_tensor(p), k).numpy()
        ref = np.zeros_like(p)
        for i, row in enumerate(p):
            idx = np.argsort(-row)[:k]
            ref[i, idx] = row[idx] if k == 1 else row[idx] / row[idx].sum()
        assert np.abs(g - ref).max() < 1e-15
        assert ((g > 0).sum(axis=1) == k).all()


def np_expert(seq: torch.nn.Sequential, h: np.ndarray) -> np.ndarray:
    """Linear -> GELU -> Dropout (off) -> Linear -> GELU."""
    return np_gelu(lin(np_gelu(lin(h, seq[0])), seq[3]))


TASKS = {"genre": 5, "flag": 1, "tags": 3}


@pytest.mark.parametrize("shared", [False, True], ids=["routed", "shared-expert"])
@pytest.mark.parametrize("top_k", [None, 1, 2])
def test_moe_classifier_matches_manual(top_k, shared):
    torch.manual_seed(0)
    moe = MixtureOfExpertsClassifier(7, 6, 4, TASKS, top_k=top_k, dropout=0.4, shared_expert=shared)
    moe = seeded(moe, 16)
    rng = np.random.default_rng(17)
    h = rng.standard_normal((5, 7))
    logits, gate_probs, gate_weights = moe(torch.as_tensor(h))
    assert set(logits) == set(gate_probs) == set(gate_weights) == set(TASKS)
    experts = np.stack([np_expert(e, h) for e in moe.experts], axis=1)  # (B, E, H)
    always = np_expert(moe.shared_expert, h) if shared else 0.0  # outside the gates, weight 1
    for task, width in TASKS.items():
        probs = np_softmax(lin(h, moe.gates[task]))
        weights = probs.copy()
        if top_k is not None:
            weights = np.zeros_like(probs)
            for i, row in enumerate(probs):
                idx = np.argsort(-row)[:top_k]
                weights[i, idx] = row[idx] if top_k == 1 else row[idx] / row[idx].sum()
        mixed = np.einsum("be,beh->bh", weights, experts) + always
        expected = lin(mixed, moe.towers[task][1])
        assert logits[task].shape == (5, width)
        assert np.abs(logits[task].detach().numpy() - expected).max() < TIGHT
        assert np.abs(gate_probs[task].detach().numpy() - probs).max() < TIGHT  # before top-k
        assert np.abs(gate_weights[task].detach().numpy() - weights).max() < TIGHT
        assert np.abs(gate_probs[task].sum(-1).detach().numpy() - 1).max() < 1e-12
        if top_k == 1:
            nonzero = (gate_weights[task] != 0).sum(-1)
            assert torch.equal(nonzero, torch.ones(5, dtype=torch.long))
            assert torch.equal(gate_weights[task].max(-1).values, gate_probs[task].max(-1).values)
    # separate gates: two tasks route differently
    assert (gate_probs["genre"] - gate_probs["tags"]).abs().max().item() > 1e-3


@pytest.mark.parametrize("top_k", [1, 2])
def test_moe_gates_learn_from_the_task_loss(top_k):
    """Regression: with top_k=1 the single kept weight was renormalised to exactly 1, so the task loss's gradient
    on the gate was ~6e-9 (rounding) against ~0.3 with top-2. The gradient must equal that of an independent
    per-document computation, y_i = Tower(g_i . Expert(h_i)) with g_i = p_{i,e*} (k = 1) or the renormalised top-k
    probabilities, and be of the same order for k = 1 and k = 2."""
    torch.manual_seed(0)
    moe = seeded(MixtureOfExpertsClassifier(7, 6, num_experts=4, task_output_sizes={"genre": 5}, top_k=top_k), 21)
    h = torch.as_tensor(np.random.default_rng(22).standard_normal((6, 7)))
    labels = torch.tensor([0, 3, 1, 4, 2, 0])
    logits, _, _ = moe(h)
    torch.nn.functional.cross_entropy(logits["genre"], labels).backward()
    got = moe.gates["genre"].weight.grad.clone()

    gate_weight = moe.gates["genre"].weight.detach().clone().requires_grad_(True)
    rows = []
    for i in range(h.shape[0]):
        probs = torch.softmax(h[i] @ gate_weight.T + moe.gates["genre"].bias.detach(), dim=-1)
        chosen = sorted(range(4), key=lambda e: -float(probs[e].detach()))[:top_k]
        kept = torch.stack([probs[e] for e in chosen])
        if top_k > 1:
            kept = kept / kept.sum()
        mixed = sum(w * moe.experts[e](h[i : i + 1])[0].detach() for w, e in zip(kept, chosen))
        rows.append(moe.towers["genre"](mixed))
    torch.nn.functional.cross_entropy(torch.stack(rows), labels).backward()
    assert (got - gate_weight.grad).abs().max().item() < 1e-12
    assert got.norm().item() > 1e-2


def test_moe_classifier_eval_is_deterministic_and_train_uses_dropout():
    torch.manual_seed(0)
    moe = seeded(MixtureOfExpertsClassifier(7, 6, num_experts=3, task_output_sizes=TASKS, dropout=0.5), 18)
    h = torch.randn(4, 7, dtype=torch.float64)
    first, second = moe(h)[0], moe(h)[0]
    assert all(torch.equal(first[t], second[t]) for t in TASKS)
    moe.train()
    torch.manual_seed(2)
    trained = moe(h)[0]
    assert (trained["genre"] - first["genre"]).abs().max().item() > 1e-3


def test_mlp_classifier():
    torch.manual_seed(0)
    mlp = seeded(MLPClassifier(7, 6, TASKS, dropout=0.3), 19)
    rng = np.random.default_rng(20)
    h = rng.standard_normal((4, 7))
    logits, gate_probs, gate_weights = mlp(torch.as_tensor(h))
    assert gate_probs == {} and gate_weights == {}
    assert set(logits) == set(TASKS)
    for task, width in TASKS.items():
        assert logits[task].shape == (4, width)
        head = mlp.heads[task]
        expected = lin(np_expert(head[0], h), head[2])
        assert np.abs(logits[task].detach().numpy() - expected).max() < TIGHT
