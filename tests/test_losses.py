"""Numbers of modeling_hilbert/losses_hilbert.py, each checked against an independent computation (numpy loops,
hand-computed values, or torch's own reference losses)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from modeling_hilbert.losses_hilbert import (
    all_reduce_sum,
    cka_loss,
    classification_loss,
    classification_loss_terms,
    direct_contrastive_loss,
    distributed_world_size,
    gather_with_grad,
    info_nce,
    info_nce_mutual_information,
    linear_cka,
    mi_balance_loss,
    moe_load_balance_loss,
    reciprocal_dual_contrastive_loss,
    symmetric_info_nce,
)

TIGHT = 1e-10  # float64 comparisons
# classification_loss_terms computes in float32 (`logits.float()`), whatever the input dtype: compare at float32 level.
F32 = dict(rtol=2e-6, atol=1e-7)


def t64(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def normalised_rows(rng, b, p):
    x = rng.standard_normal((b, p))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ------------------------------------------------------------------------------------------ references
def np_linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Feature-space form: ||Y~^T X~||_F^2 / (||X~^T X~||_F ||Y~^T Y~||_F), columns centred over the batch."""
    xc, yc = x - x.mean(axis=0), y - y.mean(axis=0)
    return np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))


def np_info_nce(q: np.ndarray, k: np.ndarray, s: float) -> float:
    """-1/B sum_i log softmax_j(s q_i.k_j)[i], written as explicit loops with a max-shifted log-sum-exp."""
    b = q.shape[0]
    total = 0.0
    for i in range(b):
        logits = [s * float(np.dot(q[i], k[j])) for j in range(b)]
        m = max(logits)
        lse = m + math.log(sum(math.exp(value - m) for value in logits))
        total += -(logits[i] - lse)
    return total / b


def np_sym_info_nce(x, y, s):
    return 0.5 * (np_info_nce(x, y, s) + np_info_nce(y, x, s))


# ------------------------------------------------------------------------------------------------- CKA
def test_linear_cka_matches_feature_space_formula_with_different_widths():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((7, 5)), rng.standard_normal((7, 11))
    y[:, :5] += 0.8 * x  # related but not identical geometry: a value well inside (0, 1)
    expected = np_linear_cka(x, y)
    got = linear_cka(t64(x), t64(y))
    assert got.dtype == torch.float64
    assert 0.05 < expected < 0.95
    assert abs(got.item() - expected) < TIGHT
    # symmetric
    assert abs(linear_cka(t64(y), t64(x)).item() - expected) < TIGHT


def test_linear_cka_invariances_and_range():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((7, 5)), rng.standard_normal((7, 11))
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    assert np.allclose(q.T @ q, np.eye(5))
    assert abs(linear_cka(t64(x), t64(x @ q)).item() - 1.0) < TIGHT
    assert abs(linear_cka(t64(x), t64(3.7 * x)).item() - 1.0) < TIGHT
    assert abs(linear_cka(t64(x), t64(x)).item() - 1.0) < TIGHT
    # translation of either argument (columns are centred)
    assert abs(linear_cka(t64(x + 5.0), t64(y)).item() - np_linear_cka(x, y)) < TIGHT
    # orthogonal transform of one argument against a different second argument leaves the value unchanged
    assert abs(linear_cka(t64(x @ q), t64(y)).item() - linear_cka(t64(x), t64(y)).item()) < TIGHT
    for seed in range(20):
        r = np.random.default_rng(100 + seed)
        v = linear_cka(t64(r.standard_normal((6, 3))), t64(r.standard_normal((6, 9)))).item()
        assert 0.0 <= v <= 1.0 + 1e-12


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(3, 12),
    width_x=st.integers(1, 8),
    width_y=st.integers(1, 8),
    scale=st.floats(0.05, 20.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_linear_cka_orthogonal_and_scale_invariance_property(batch, width_x, width_y, scale, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((batch, width_x)), rng.standard_normal((batch, width_y))
    qx, _ = np.linalg.qr(rng.standard_normal((width_x, width_x)))
    qy, _ = np.linalg.qr(rng.standard_normal((width_y, width_y)))

    # linear_cka guards its denominator with an absolute eps = 1e-12: keep to inputs whose Gram norms make it negligible
    # (tiny inputs are covered by test_linear_cka_scale_invariance_small_embeddings).
    def gram_norm(a):
        a = a - a.mean(axis=0)
        return np.linalg.norm(a @ a.T)

    assume(min(gram_norm(x), gram_norm(y), scale**2 * gram_norm(x)) > 1e-1)
    base = np_linear_cka(x, y)
    assert abs(linear_cka(t64(x), t64(y)).item() - base) < 1e-9
    assert abs(linear_cka(t64(scale * x @ qx), t64(y @ qy)).item() - base) < 1e-9
    assert abs(linear_cka(t64(x), t64(scale * x @ qx)).item() - 1.0) < 1e-9


@pytest.mark.parametrize("scale", [1e-2, 1e-3, 1e-4])
def test_linear_cka_scale_invariance_small_embeddings(scale):
    """CKA is scale invariant (docstring): embeddings with entries ~1e-3 are still the same geometry, CKA(X, X) = 1.

    Fails when the denominator's guard is an absolute eps added to ||K_x|| ||K_y||, which scales as scale^4."""
    rng = np.random.default_rng(14)
    x = rng.standard_normal((8, 16))
    y = rng.standard_normal((8, 5))
    assert abs(linear_cka(t64(scale * x), t64(scale * x)).item() - 1.0) < 1e-6
    assert abs(linear_cka(t64(scale * x), t64(scale * y)).item() - np_linear_cka(x, y)) < 1e-6


def test_cka_loss_matches_numpy():
    rng = np.random.default_rng(2)
    a, t, j = rng.standard_normal((9, 6)), rng.standard_normal((9, 4)), rng.standard_normal((9, 8))
    j[:, :4] += t  # make the two terms differ clearly
    expected = (1 - np_linear_cka(a, j)) + (1 - np_linear_cka(t, j))
    assert abs(cka_loss(t64(a), t64(t), t64(j)).item() - expected) < TIGHT
    # a joint space equal to a rotated audio space: the audio term vanishes
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    only_text = 1 - np_linear_cka(t, a @ q)
    assert abs(cka_loss(t64(a), t64(t), t64(a @ q)).item() - only_text) < TIGHT


def test_cka_loss_batch_of_one_is_zero_and_backpropagates():
    a = torch.randn(1, 6, dtype=torch.float64, requires_grad=True)
    t = torch.randn(1, 4, dtype=torch.float64, requires_grad=True)
    j = torch.randn(1, 8, dtype=torch.float64, requires_grad=True)
    loss = cka_loss(a, t, j)
    assert loss.item() == 0.0
    loss.backward()
    for p in (a, t, j):
        assert p.grad is not None and torch.isfinite(p.grad).all() and (p.grad == 0).all()


def test_cka_loss_gradients_finite_for_batch_of_two():
    a = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    j = torch.randn(2, 8, dtype=torch.float64, requires_grad=True)
    cka_loss(a, t, j).backward()
    for p in (a, t, j):
        assert torch.isfinite(p.grad).all()


# ---------------------------------------------------------------------------------------- contrastive
def test_info_nce_matches_numpy_loops():
    rng = np.random.default_rng(3)
    q, k = normalised_rows(rng, 6, 4), normalised_rows(rng, 6, 4)
    s = 7.3
    expected = np_info_nce(q, k, s)
    got = info_nce(t64(q), t64(k), torch.tensor(s, dtype=torch.float64))
    assert abs(got.item() - expected) < TIGHT
    # the direction matters (otherwise the symmetric test below could not tell the directions apart)
    assert abs(np_info_nce(k, q, s) - expected) > 1e-3


def test_symmetric_info_nce_is_mean_of_both_directions():
    rng = np.random.default_rng(4)
    x, y = normalised_rows(rng, 5, 3), normalised_rows(rng, 5, 3)
    s = torch.tensor(4.2, dtype=torch.float64)
    expected = 0.5 * (np_info_nce(x, y, 4.2) + np_info_nce(y, x, 4.2))
    assert abs(symmetric_info_nce(t64(x), t64(y), s).item() - expected) < TIGHT


def test_reciprocal_dual_and_direct_contrastive_losses():
    rng = np.random.default_rng(5)
    a, t, j = (normalised_rows(rng, 8, 6) for _ in range(3))
    s = 11.0
    st_ = torch.tensor(s, dtype=torch.float64)
    aj, tj, at = np_sym_info_nce(a, j, s), np_sym_info_nce(t, j, s), np_sym_info_nce(a, t, s)
    total, got_aj, got_tj = reciprocal_dual_contrastive_loss(t64(a), t64(t), t64(j), st_)
    assert abs(got_aj.item() - aj) < TIGHT
    assert abs(got_tj.item() - tj) < TIGHT
    assert abs(total.item() - 0.5 * (aj + tj)) < TIGHT
    assert abs(aj - tj) > 1e-3  # the two terms are not interchangeable here
    assert abs(direct_contrastive_loss(t64(a), t64(t), st_).item() - at) < TIGHT


def test_info_nce_extremes():
    b = 6
    eye = torch.eye(b, dtype=torch.float64)  # perfectly aligned, orthogonal (well separated) pairs
    big = torch.tensor(100.0, dtype=torch.float64)
    assert symmetric_info_nce(eye, eye, big).item() < 1e-12
    assert info_nce(eye, eye, big).item() < 1e-12
    # uniform logits: scale 0, or every row the same vector
    rng = np.random.default_rng(6)
    q, k = t64(normalised_rows(rng, b, 4)), t64(normalised_rows(rng, b, 4))
    assert abs(info_nce(q, k, torch.tensor(0.0, dtype=torch.float64)).item() - math.log(b)) < 1e-12
    same = t64(np.tile(normalised_rows(rng, 1, 4), (b, 1)))
    assert abs(symmetric_info_nce(same, same, torch.tensor(9.0, dtype=torch.float64)).item() - math.log(b)) < 1e-12


def test_info_nce_gradient_reaches_logit_scale():
    rng = np.random.default_rng(7)
    q, k = t64(normalised_rows(rng, 5, 3)), t64(normalised_rows(rng, 5, 3))
    s = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    info_nce(q, k, s).backward()
    h = 1e-6
    numeric = (np_info_nce(q.numpy(), k.numpy(), 3.0 + h) - np_info_nce(q.numpy(), k.numpy(), 3.0 - h)) / (2 * h)
    assert abs(s.grad.item() - numeric) < 1e-7


# --------------------------------------------------------------------------------------------- MI
def test_info_nce_mutual_information():
    nce = torch.tensor(0.7, dtype=torch.float64)
    assert abs(info_nce_mutual_information(nce, 8).item() - (math.log(8) - 0.7)) < TIGHT


def test_mi_balance_loss_and_estimates():
    a_nce = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    t_nce = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    b = 16
    loss, mi_a, mi_t = mi_balance_loss(a_nce, t_nce, b, b)
    ia, it = math.log(b) - 1.3, math.log(b) - 0.4
    assert abs(mi_a.item() - ia) < TIGHT
    assert abs(mi_t.item() - it) < TIGHT
    assert abs(loss.item() - (ia - it) ** 2) < TIGHT
    loss.backward()
    # dL/dnce_a = -2 (I_a - I_t), dL/dnce_t = +2 (I_a - I_t)
    assert abs(a_nce.grad.item() - (-2 * (ia - it))) < TIGHT
    assert abs(t_nce.grad.item() - (2 * (ia - it))) < TIGHT


def test_mi_balance_loss_zero_when_balanced():
    v = torch.tensor(0.9, dtype=torch.float64)
    loss, mi_a, mi_t = mi_balance_loss(v, v.clone(), 10, 10)
    assert loss.item() == 0.0 and mi_a.item() == mi_t.item()


def test_mi_estimates_use_each_modality_s_own_document_count():
    a_nce = torch.tensor(1.1, dtype=torch.float64, requires_grad=True)
    t_nce = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    loss, mi_a, mi_t = mi_balance_loss(a_nce, t_nce, 12, 5)
    ia, it = math.log(12) - 1.1, math.log(5) - 0.6
    assert abs(mi_a.item() - ia) < TIGHT and abs(mi_t.item() - it) < TIGHT
    assert abs(loss.item() - (ia - it) ** 2) < TIGHT
    # fewer than 2 documents of a modality: its estimate and the balance term are 0, with zero gradient
    for counts in ((12, 1), (12, 0), (1, 5), (0, 0)):
        a_nce.grad = t_nce.grad = None
        loss, mi_a, mi_t = mi_balance_loss(a_nce, t_nce, *counts)
        assert loss.item() == 0.0
        assert mi_a.item() == (ia if counts[0] >= 2 else 0.0) and mi_t.item() == (it if counts[1] >= 2 else 0.0)
        loss.backward()
        assert a_nce.grad.item() == 0.0 and t_nce.grad.item() == 0.0


def np_masked_terms(a, t, j, s, has_a, has_t):
    """Reference of the representation terms with documents missing a modality: each modality's terms on its own
    documents only (numpy loops on the selected rows), 0 with fewer than 2."""

    def on(mask, fn, *xs):
        return fn(*(x[mask] for x in xs)) if mask.sum() >= 2 else 0.0

    aj = on(has_a, lambda x, y: np_sym_info_nce(x, y, s), a, j)
    tj = on(has_t, lambda x, y: np_sym_info_nce(x, y, s), t, j)
    at = on(has_a & has_t, lambda x, y: np_sym_info_nce(x, y, s), a, t)
    cka = on(has_a, lambda x, y: 1 - np_linear_cka(x, y), a, j) + on(has_t, lambda x, y: 1 - np_linear_cka(x, y), t, j)
    na, nt = int(has_a.sum()), int(has_t.sum())
    mi_a = math.log(na) - aj if na >= 2 else 0.0
    mi_t = math.log(nt) - tj if nt >= 2 else 0.0
    mi = (mi_a - mi_t) ** 2 if min(na, nt) >= 2 else 0.0
    return {"dual": 0.5 * (aj + tj), "aj": aj, "tj": tj, "direct": at, "cka": cka, "mi": mi, "mi_a": mi_a, "mi_t": mi_t}


@settings(max_examples=30, deadline=None)
@given(
    batch=st.integers(1, 9),
    seed=st.integers(0, 2**31 - 1),
    p_audio=st.sampled_from([0.0, 0.3, 0.8, 1.0]),
    p_text=st.sampled_from([0.0, 0.3, 0.8, 1.0]),
)
def test_terms_leave_out_documents_missing_a_modality_property(batch, seed, p_audio, p_text):
    """Every term with masks equals the numpy reference on the selected documents; rows of a modality a document
    lacks get exactly zero gradient from the terms (its embedding is the pooling bias, not information)."""
    rng = np.random.default_rng(seed)
    has_a, has_t = rng.random(batch) < p_audio, rng.random(batch) < p_text
    a, t, j = (normalised_rows(rng, batch, 5) for _ in range(3))
    s = 6.5
    ref = np_masked_terms(a, t, j, s, has_a, has_t)
    audio, text, joint = (t64(x).requires_grad_(True) for x in (a, t, j))
    scale = torch.tensor(s, dtype=torch.float64, requires_grad=True)
    ma, mt = torch.as_tensor(has_a), torch.as_tensor(has_t)
    dual, aj, tj = reciprocal_dual_contrastive_loss(audio, text, joint, scale, ma, mt)
    direct = direct_contrastive_loss(audio, text, scale, ma & mt)
    cka = cka_loss(audio, text, joint, ma, mt)
    mi, mi_a, mi_t = mi_balance_loss(aj, tj, int(has_a.sum()), int(has_t.sum()))
    got = {"dual": dual, "aj": aj, "tj": tj, "direct": direct, "cka": cka, "mi": mi, "mi_a": mi_a, "mi_t": mi_t}
    for name, value in got.items():
        assert abs(value.item() - ref[name]) < 1e-9, (name, value.item(), ref[name])
    (dual + direct + cka + mi).backward()
    for x in (audio, text, joint, scale):
        assert torch.isfinite(x.grad).all()
    assert (audio.grad[~ma] == 0).all() and (text.grad[~mt] == 0).all()
    assert (joint.grad[~(ma | mt)] == 0).all()


def test_all_documents_missing_a_modality_gives_zero_terms_with_finite_gradients():
    rng = np.random.default_rng(21)
    a, t, j = (t64(normalised_rows(rng, 5, 4)).requires_grad_(True) for _ in range(3))
    scale = torch.tensor(8.0, dtype=torch.float64, requires_grad=True)
    none, one, every = (
        torch.zeros(5, dtype=torch.bool),
        torch.tensor([False, False, True, False, False]),
        torch.ones(5, dtype=torch.bool),
    )
    for audio_present, text_present in ((every, none), (none, none), (one, every), (one, one)):
        for x in (a, t, j, scale):
            x.grad = None
        dual, aj, tj = reciprocal_dual_contrastive_loss(a, t, j, scale, audio_present, text_present)
        cka = cka_loss(a, t, j, audio_present, text_present)
        na, nt = int(audio_present.sum()), int(text_present.sum())
        mi, mi_a, mi_t = mi_balance_loss(aj, tj, na, nt)
        direct = direct_contrastive_loss(a, t, scale, audio_present & text_present)
        assert mi.item() == 0.0 and direct.item() == 0.0
        if na < 2:
            assert aj.item() == 0.0 and mi_a.item() == 0.0
        if nt < 2:
            assert tj.item() == 0.0 and mi_t.item() == 0.0
        (dual + cka + mi + direct).backward()
        for x in (a, t, j, scale):
            assert torch.isfinite(x.grad).all()
        if na < 2 and nt < 2:
            assert dual.item() == 0.0 and cka.item() == 0.0
            assert all((x.grad == 0).all() for x in (a, t, j, scale))
        else:  # the modality that is there still trains
            present = a if na >= 2 else t
            assert present.grad.abs().max() > 0


# -------------------------------------------------------------------------------------- MoE balance
HAND_PROBS = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.1, 0.6, 0.3],
        [0.5, 0.1, 0.4],
        [0.2, 0.3, 0.5],
    ]
)


def np_load_balance(probs: np.ndarray, k: int | None) -> tuple[float, np.ndarray]:
    """(L_moe, f): top-k counts for a sparse gate; for a dense gate (k None or >= E) the soft dispatch f = P, where
    L = E sum_e P_e^2 = 1 + CV^2(P) is Shazeer et al.'s importance loss (plus 1), computed here in that form."""
    b, e = probs.shape
    if k is None or k >= e:
        importance = probs.sum(axis=0)  # Shazeer et al. 2017: total gate weight of each expert over the batch
        cv2 = importance.var() / importance.mean() ** 2  # population variance
        return 1.0 + float(cv2), probs.mean(axis=0)
    counts = np.zeros(e)
    for row in probs:
        for idx in np.argsort(-row)[:k]:
            counts[idx] += 1
    f = counts / (b * k)
    return e * float((f * probs.mean(axis=0)).sum()), f


def test_moe_load_balance_uniform_and_collapsed():
    for e in (2, 3, 5):
        uniform = torch.full((8, e), 1.0 / e, dtype=torch.float64)
        for k in (None, 1, 2, e):
            assert abs(moe_load_balance_loss(uniform, top_k=k).item() - 1.0) < 1e-12
        collapsed = torch.zeros(8, e, dtype=torch.float64)
        collapsed[:, 1] = 1.0
        for k in (None, 1, e):
            assert abs(moe_load_balance_loss(collapsed, top_k=k).item() - e) < 1e-12
        if e > 2:
            assert abs(moe_load_balance_loss(collapsed, top_k=2).item() - e / 2) < 1e-12


@pytest.mark.parametrize("top_k, hand_value", [(1, 1.03125), (2, 0.984375), (3, 1.00875), (None, 1.00875)])
def test_moe_load_balance_hand_example(top_k, hand_value):
    # top-1: argmax = [0, 1, 0, 2] -> f = [1/2, 1/4, 1/4]; P = [0.375, 0.3, 0.325] -> 3 * 0.34375
    # top-2: {0,1} {1,2} {0,2} {1,2} -> f = [2, 3, 3] / 8 -> 3 * 0.328125
    # dense (k = E = 3 or None): f = P -> 3 * (0.375^2 + 0.3^2 + 0.325^2) = 3 * 0.33625
    expected, f = np_load_balance(HAND_PROBS, top_k)
    assert abs(expected - hand_value) < 1e-12
    probs = t64(HAND_PROBS).requires_grad_(True)
    loss = moe_load_balance_loss(probs, top_k=top_k)
    assert abs(loss.item() - hand_value) < TIGHT
    loss.backward()
    # sparse: f carries no gradient, dL/dp[b, e] = E f_e / B; dense: L = E sum_e P_e^2, dL/dp[b, e] = 2 E P_e / B
    b, e = HAND_PROBS.shape
    factor = 2 if top_k in (None, 3) else 1
    analytic = np.tile(factor * e * f / b, (b, 1))
    assert np.abs(probs.grad.numpy() - analytic).max() < TIGHT


@settings(max_examples=40, deadline=None)
@given(
    experts=st.integers(2, 6),
    batch=st.integers(1, 9),
    k_choice=st.sampled_from(["one", "two", "all", "none"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_moe_load_balance_gradient_through_softmax_gate(experts, batch, k_choice, seed):
    """Regression (k = E): the balance loss was the constant 1, with zero gradient through the softmax. For every k
    the value equals the reference and the gradient through a softmax gate equals the analytic one, non-zero for
    an unbalanced gate."""
    k = {"one": 1, "two": min(2, experts), "all": experts, "none": None}[k_choice]
    rng = np.random.default_rng(seed)
    logits = t64(rng.standard_normal((batch, experts)) * 2).requires_grad_(True)
    probs = torch.softmax(logits, dim=-1)
    loss = moe_load_balance_loss(probs, top_k=k)
    p = probs.detach().numpy()
    expected, f = np_load_balance(p, k)
    assert abs(loss.item() - expected) < 1e-10
    loss.backward()
    dense = k is None or k >= experts
    upstream = (2 if dense else 1) * experts * f / batch  # dL/dp, the same for every row
    analytic = p * (upstream - (p * upstream).sum(axis=1, keepdims=True))  # softmax Jacobian
    assert np.abs(logits.grad.numpy() - analytic).max() < TIGHT
    # an unbalanced dispatch (f not uniform: always so for a dense gate whose P is not) gives a real gradient
    assume(np.ptp(f) > 1e-2)
    assert np.abs(logits.grad.numpy()).max() > 1e-4


# ---------------------------------------------------------------------------------- classification
def np_log_softmax(x):
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def np_log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def np_multiclass(logits, labels, weights=None, gamma=0.0):
    logp = np_log_softmax(logits)
    num = den = 0.0
    for row, y in zip(logp, labels):
        if y == -100:
            continue
        w = 1.0 if weights is None else weights[y]
        p = math.exp(row[y])
        num += -w * (1 - p) ** gamma * row[y]
        den += w
    return num, den


def np_binary_terms(x, y, pos_weight=1.0, gamma=0.0):
    """Element-wise -(1 - p_t)^gamma [w y log s(x) + (1 - y) log(1 - s(x))]."""
    p = 1.0 / (1.0 + np.exp(-x))
    p_t = np.where(y == 1, p, 1 - p)
    base = -(pos_weight * y * np_log_sigmoid(x) + (1 - y) * np_log_sigmoid(-x))
    return (1 - p_t) ** gamma * base


@pytest.fixture
def multiclass_batch():
    rng = np.random.default_rng(9)
    logits = rng.standard_normal((10, 4)) * 2
    labels = np.array([0, 3, 1, 1, 2, 0, 3, 3, 2, 1])
    weights = np.array([0.5, 2.0, 1.3, 0.7])
    return logits, labels, weights


def test_multiclass_weighted_cross_entropy(multiclass_batch):
    logits, labels, weights = multiclass_batch
    got = classification_loss(t64(logits), torch.as_tensor(labels), "multiclass", t64(weights))
    ref_torch = F.cross_entropy(t64(logits), torch.as_tensor(labels), weight=t64(weights))
    num, den = np_multiclass(logits, labels, weights)
    assert np.isclose(got.item(), ref_torch.item(), **F32)
    assert np.isclose(got.item(), num / den, **F32)
    # weights matter (the unweighted mean is clearly different)
    unweighted = classification_loss(t64(logits), torch.as_tensor(labels), "multiclass")
    assert np.isclose(unweighted.item(), F.cross_entropy(t64(logits), torch.as_tensor(labels)).item(), **F32)
    assert abs(unweighted.item() - got.item()) > 1e-3


def test_multiclass_ignore_index(multiclass_batch):
    logits, labels, weights = multiclass_batch
    labels = labels.copy()
    labels[[2, 7]] = -100
    got = classification_loss(t64(logits), torch.as_tensor(labels), "multiclass", t64(weights))
    ref = F.cross_entropy(t64(logits), torch.as_tensor(labels), weight=t64(weights), ignore_index=-100)
    num, den = np_multiclass(logits, labels, weights)
    assert np.isclose(got.item(), ref.item(), **F32)
    assert np.isclose(got.item(), num / den, **F32)
    # the ignored rows' logits have no influence at all
    other = logits.copy()
    other[[2, 7]] = np.array([50.0, -50.0, 3.0, 1e4])
    assert classification_loss(t64(other), torch.as_tensor(labels), "multiclass", t64(weights)).item() == got.item()
    total, normaliser = classification_loss_terms(t64(logits), torch.as_tensor(labels), "multiclass", t64(weights))
    assert np.isclose(total.item(), num, **F32)
    assert np.isclose(normaliser.item(), den, **F32)
    assert np.isclose(normaliser.item(), weights[labels[labels != -100]].sum(), **F32)


def test_multiclass_focal(multiclass_batch):
    logits, labels, weights = multiclass_batch
    labels = labels.copy()
    labels[4] = -100
    num, den = np_multiclass(logits, labels, weights, gamma=2.0)
    got = classification_loss(t64(logits), torch.as_tensor(labels), "multiclass", t64(weights), focal_gamma=2.0)
    assert np.isclose(got.item(), num / den, **F32)
    plain, _ = np_multiclass(logits, labels, weights)
    assert num < plain - 1e-3  # focal down-weights: the check can tell focal from plain CE
    total, normaliser = classification_loss_terms(t64(logits), torch.as_tensor(labels), "multiclass", t64(weights), 2.0)
    assert np.isclose(total.item(), num, **F32) and np.isclose(normaliser.item(), den, **F32)


@pytest.mark.parametrize("shape", ["column", "flat"])
def test_binary_pos_weight(shape):
    rng = np.random.default_rng(10)
    x = rng.standard_normal(9) * 2
    y = np.array([1, 0, 0, 1, 1, 0, 1, 0, 0], dtype=np.float64)
    pw = 3.5
    logits = t64(x).unsqueeze(-1) if shape == "column" else t64(x)
    got = classification_loss(logits, torch.as_tensor(y, dtype=torch.long), "binary", t64([pw]))
    ref = F.binary_cross_entropy_with_logits(t64(x), t64(y), pos_weight=t64([pw]))
    assert np.isclose(got.item(), ref.item(), **F32)
    assert np.isclose(got.item(), np_binary_terms(x, y, pw).mean(), **F32)
    # with unlabelled items
    labels = y.astype(np.int64)
    labels[[1, 3]] = -100
    keep = labels >= 0
    got = classification_loss(logits, torch.as_tensor(labels), "binary", t64([pw]))
    ref = F.binary_cross_entropy_with_logits(t64(x[keep]), t64(y[keep]), pos_weight=t64([pw]))
    assert np.isclose(got.item(), ref.item(), **F32)
    total, normaliser = classification_loss_terms(logits, torch.as_tensor(labels), "binary", t64([pw]))
    assert normaliser.item() == keep.sum()
    assert np.isclose(total.item(), np_binary_terms(x[keep], y[keep], pw).sum(), **F32)


def test_binary_focal():
    rng = np.random.default_rng(11)
    x = rng.standard_normal(8) * 2
    labels = np.array([1, 0, -100, 1, 0, 0, 1, 1])
    keep = labels >= 0
    y = np.clip(labels, 0, None).astype(np.float64)
    pw = 2.0
    expected = np_binary_terms(x[keep], y[keep], pw, gamma=2.0).mean()
    got = classification_loss(t64(x).unsqueeze(-1), torch.as_tensor(labels), "binary", t64([pw]), focal_gamma=2.0)
    assert np.isclose(got.item(), expected, **F32)
    assert abs(expected - np_binary_terms(x[keep], y[keep], pw).mean()) > 1e-3


def test_multilabel_pos_weight_and_ignored_rows():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((7, 3)) * 2
    y = (rng.random((7, 3)) < 0.4).astype(np.int64)
    pw = np.array([0.5, 2.0, 4.0])
    got = classification_loss(t64(x), torch.as_tensor(y), "multilabel", t64(pw))
    ref = F.binary_cross_entropy_with_logits(t64(x), t64(y), pos_weight=t64(pw))
    assert np.isclose(got.item(), ref.item(), **F32)
    assert np.isclose(got.item(), np_binary_terms(x, y.astype(float), pw).mean(), **F32)
    # a row with any -100 is ignored as a whole
    labels = y.copy()
    labels[2, 1] = -100
    labels[5] = -100
    keep = np.array([i not in (2, 5) for i in range(7)])
    got = classification_loss(t64(x), torch.as_tensor(labels), "multilabel", t64(pw))
    ref = F.binary_cross_entropy_with_logits(t64(x[keep]), t64(y[keep]), pos_weight=t64(pw))
    assert np.isclose(got.item(), ref.item(), **F32)
    total, normaliser = classification_loss_terms(t64(x), torch.as_tensor(labels), "multilabel", t64(pw))
    assert normaliser.item() == keep.sum() * 3
    # focal variant, element-wise
    got = classification_loss(t64(x), torch.as_tensor(labels), "multilabel", t64(pw), focal_gamma=1.5)
    expected = np_binary_terms(x[keep], y[keep].astype(float), pw, gamma=1.5).mean()
    assert np.isclose(got.item(), expected, **F32)


@pytest.mark.parametrize(
    "task, logits, labels",
    [
        ("multiclass", torch.randn(4, 3), torch.full((4,), -100)),
        ("binary", torch.randn(4, 1), torch.full((4,), -100)),
        ("multilabel", torch.randn(4, 3), torch.tensor([[0, 1, -100]] * 4)),
    ],
)
def test_no_labelled_item_gives_zero(task, logits, labels):
    logits = logits.clone().requires_grad_(True)
    loss = classification_loss(logits, labels, task)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all() and (logits.grad == 0).all()


def np_focal_multiclass_grad(logits, labels, weights, gamma):
    """Analytic d/dz of sum_i -w_i (1 - p_i)^gamma log p_i (unlabelled rows: 0), with 1 - p = sum of the other
    classes' probabilities (accurate when p saturates):

        dl/dz_k = w (delta_ky - p_k) [ gamma (1 - p)^(gamma - 1) p log p - (1 - p)^gamma ]
    """
    grad = np.zeros_like(logits)
    for i, (row, y) in enumerate(zip(np_log_softmax(logits), labels)):
        if y == -100:
            continue
        probs = np.exp(row)
        rest = probs[np.arange(len(row)) != y].sum()
        p, logp = probs[y], row[y]
        w = 1.0 if weights is None else weights[y]
        inner = (gamma * rest ** (gamma - 1) * p * logp if gamma else 0.0) - rest**gamma
        grad[i] = w * (np.eye(len(row))[y] - probs) * inner
    return grad


def np_focal_binary_grad(x, y, pos_weight, gamma):
    """Analytic d/dx of (1 - p_t)^gamma BCE: with q = 1 - p_t = sigma((1 - 2y) x) and BCE b (db/dx = -w q for y = 1,
    q for y = 0): dl/dx = q^gamma [ gamma (1 - 2y) (1 - q) b + db/dx ]."""
    s = 1.0 - 2.0 * y
    q = 1.0 / (1.0 + np.exp(-s * x))
    b = -(pos_weight * y * np_log_sigmoid(x) + (1 - y) * np_log_sigmoid(-x))
    db = np.where(y == 1, -pos_weight * q, q)
    return q**gamma * (gamma * s * (1 - q) * b + db)


FOCAL_GAMMAS = [0.25, 0.5, 1.0, 2.0]


@pytest.mark.parametrize("gamma", FOCAL_GAMMAS)
def test_multiclass_focal_saturated_and_ignored_rows_have_finite_exact_gradients(gamma):
    """Regression: (1 - p)^gamma with gamma < 1 has an infinite derivative at p = 1, which autograd multiplied by
    dp/dz = 0: NaN gradients for a saturated row, also for an unlabelled (-100) row, whose class-0 gather saturated
    too. Values and gradients must match the analytic formulas (float64), saturated rows included."""
    logits = np.array(
        [
            [60.0, 0.0, -5.0],  # saturated on its (correct) label: 1 - p ~ 1e-26, p == 1.0 in float64
            [0.3, -1.2, 2.0],
            [-40.0, 35.0, 0.0],  # saturated on a wrong class: p ~ 1e-33
            [80.0, 0.0, 0.0],  # unlabelled, saturated on class 0 (what the -100 row gathers)
            [1.0, 0.5, -0.5],
        ]
    )
    labels = np.array([0, 2, 0, -100, 1])
    weights = np.array([0.5, 2.0, 1.3])
    z = t64(logits).requires_grad_(True)
    total, normaliser = classification_loss_terms(z, torch.as_tensor(labels), "multiclass", t64(weights), gamma)
    num, den = np_multiclass(logits, labels, weights, gamma)
    assert abs(total.item() - num) <= 1e-12 * abs(num) and abs(normaliser.item() - den) < TIGHT
    total.backward()
    assert torch.isfinite(z.grad).all()
    expected = np_focal_multiclass_grad(logits, labels, weights, gamma)
    assert np.abs(z.grad.numpy() - expected).max() < 1e-12
    assert (z.grad[3] == 0).all()
    assert np.abs(expected[2]).max() > 1e-3  # the wrong saturated row still learns


@pytest.mark.parametrize("gamma", FOCAL_GAMMAS)
@pytest.mark.parametrize("task", ["binary", "multilabel"])
def test_sigmoid_focal_saturated_and_ignored_items_have_finite_exact_gradients(task, gamma):
    x = np.array([[40.0, -3.0], [-45.0, 0.7], [60.0, -60.0], [0.2, 38.0]])
    y = np.array([[1, 0], [0, 1], [1, 0], [0, 0]], dtype=np.int64)
    pos_weight = np.array([2.0, 0.5])
    if task == "binary":
        x, y, pos_weight = x[:, 0], y[:, 0].copy(), pos_weight[:1]
        y[2] = -100  # unlabelled, saturated
        keep = y >= 0
    else:
        y[2, 1] = -100  # the whole row is unlabelled
        keep = np.broadcast_to((y >= 0).all(axis=1, keepdims=True), y.shape)
    yf = np.clip(y, 0, None).astype(np.float64)
    z = t64(x).requires_grad_(True)
    total, normaliser = classification_loss_terms(z, torch.as_tensor(y), task, t64(pos_weight), gamma)
    expected = np.where(keep, np_binary_terms(x, yf, pos_weight, gamma), 0.0).sum()
    assert abs(total.item() - expected) <= 1e-12 * abs(expected) and normaliser.item() == keep.sum()
    total.backward()
    assert torch.isfinite(z.grad).all()
    reference = np.where(keep, np_focal_binary_grad(x, yf, pos_weight, gamma), 0.0)
    assert np.abs(z.grad.numpy() - reference).max() < 1e-12
    assert (z.grad.numpy()[~keep] == 0).all()


@pytest.mark.parametrize("gamma", FOCAL_GAMMAS)
@pytest.mark.parametrize("task", ["multiclass", "binary", "multilabel"])
def test_focal_gradients_finite_when_probabilities_round_to_one_in_float32(task, gamma):
    """float32 logits far past saturation (1 - p underflows, log p rounds to 0), unlabelled rows holding NaN/inf:
    the loss and every gradient stay finite, unlabelled rows get exactly zero gradient."""
    if task == "multiclass":
        x = torch.tensor([[300.0, 0.0, 0.0], [0.0, 0.0, 0.0], [float("nan"), 1.0, 0.0], [0.0, 500.0, 0.0]])
        labels = torch.tensor([0, 1, -100, 1])
    elif task == "binary":
        x = torch.tensor([[300.0], [0.0], [float("inf")], [-500.0]])
        labels = torch.tensor([1, 0, -100, 0])
    else:
        x = torch.tensor([[300.0, -300.0], [0.0, 0.0], [float("nan"), 0.0], [-500.0, 500.0]])
        labels = torch.tensor([[1, 0], [0, 1], [-100, 0], [0, 1]])
    x.requires_grad_(True)
    loss = classification_loss(x, labels, task, focal_gamma=gamma)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    assert (x.grad[2] == 0).all()
    # only the unsaturated row contributes: its value is the plain formula
    if task == "multiclass":
        expected = (1 - 1 / 3) ** gamma * math.log(3) / 3
    else:
        per_element = 0.5**gamma * math.log(2)
        expected = per_element / 3 if task == "binary" else 2 * per_element / 6
    assert abs(loss.item() - expected) < 1e-6


@settings(max_examples=40, deadline=None)
@given(
    gamma=st.one_of(st.sampled_from([0.0] + FOCAL_GAMMAS), st.floats(0.0, 3.0)),
    scale=st.floats(0.1, 60.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_multiclass_focal_matches_analytic_gradient_property(gamma, scale, seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((6, 4)) * scale
    labels = rng.integers(0, 4, size=6)
    labels[rng.random(6) < 0.3] = -100
    z = t64(logits).requires_grad_(True)
    total, _ = classification_loss_terms(z, torch.as_tensor(labels), "multiclass", None, gamma)
    num, _ = np_multiclass(logits, labels, None, gamma)
    assert abs(total.item() - num) <= 1e-10 * max(1.0, abs(num))
    total.backward()
    assert torch.isfinite(z.grad).all()
    assert np.abs(z.grad.numpy() - np_focal_multiclass_grad(logits, labels, None, gamma)).max() < 1e-10


def test_terms_divide_to_the_mean():
    rng = np.random.default_rng(13)
    cases = [
        (
            "multiclass",
            t64(rng.standard_normal((6, 4))),
            torch.tensor([0, 1, -100, 3, 2, 2]),
            t64([1.0, 2.0, 0.5, 1.5]),
        ),
        ("binary", t64(rng.standard_normal((6, 1))), torch.tensor([0, 1, -100, 1, 1, 0]), t64([2.0])),
        (
            "multilabel",
            t64(rng.standard_normal((6, 2))),
            torch.tensor([[0, 1], [1, 1], [-100, 0], [0, 0], [1, 0], [0, 1]]),
            None,
        ),
    ]
    for task, logits, labels, weights in cases:
        total, normaliser = classification_loss_terms(logits, labels, task, weights, focal_gamma=1.0)
        mean = classification_loss(logits, labels, task, weights, focal_gamma=1.0)
        assert normaliser.item() > 0
        assert abs(mean.item() - total.item() / normaliser.item()) < 1e-6


def test_unknown_task_type_raises():
    with pytest.raises(ValueError):
        classification_loss(torch.randn(3, 2), torch.tensor([0, 1, 0]), "regression")
    with pytest.raises(ValueError):
        classification_loss_terms(torch.randn(3, 2), torch.tensor([0, 1, 0]), "multi-class")


# ------------------------------------------------------------------------------------------ distributed
def test_distributed_helpers_without_process_group():
    assert not (torch.distributed.is_available() and torch.distributed.is_initialized())
    assert distributed_world_size() == 1
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    gathered = gather_with_grad(x)
    assert gathered.shape == x.shape and torch.equal(gathered, x)
    (gathered * torch.arange(3.0, dtype=torch.float64)).sum().backward()
    assert torch.equal(x.grad, torch.arange(3.0, dtype=torch.float64).expand(5, 3))
    count = torch.tensor([7.0])
    assert torch.equal(all_reduce_sum(count), count)
