"""Token-level LM distillation losses against values worked out by hand (plain math, no torch)."""

import math

import pytest
import torch

from edgekd.distillation.lm_losses import (IGNORE_INDEX, SparseTeacher, forward_kl, jensen_shannon,
                                           lm_distill_loss, reverse_kl, skew_kl, skew_reverse_kl)
from edgekd.errors import EdgekdError


def _softmax(xs, t=1.0):
    exps = [math.exp(x / t) for x in xs]
    return [e / sum(exps) for e in exps]


def _kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def _mix(a, b, w):
    return [w * ai + (1 - w) * bi for ai, bi in zip(a, b)]


def _one_position(logits):
    """[1, 1, V] tensor holding one position's logits."""
    return torch.tensor([[logits]], dtype=torch.float32)


def _top_k(teacher_logits, k, temperature=1.0):
    """A SparseTeacher made from dense logits by torch (the construction the cache uses)."""
    log_probs = torch.log_softmax(teacher_logits / temperature, dim=-1)
    values, indices = log_probs.topk(k, dim=-1)
    return SparseTeacher(indices.to(torch.int32), values, temperature)


STUDENT, TEACHER = [0.5, -1.0, 0.2], [2.0, 0.0, -1.0]
ALL_ONE = torch.ones(1, 1, dtype=torch.bool)


def test_forward_kl_hand_value_with_t_squared():
    p, q = _softmax(TEACHER, 2.0), _softmax(STUDENT, 2.0)
    expected = 4 * _kl(p, q)
    got = forward_kl(_one_position(STUDENT), _one_position(TEACHER), ALL_ONE, temperature=2.0)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert expected > 0.05            # a real difference, not a vacuous match


def test_reverse_kl_hand_value():
    p, q = _softmax(TEACHER), _softmax(STUDENT)
    got = reverse_kl(_one_position(STUDENT), _one_position(TEACHER), ALL_ONE)
    assert got.item() == pytest.approx(_kl(q, p), rel=1e-5)
    assert _kl(q, p) != pytest.approx(_kl(p, q), rel=1e-2)   # the direction matters here


@pytest.mark.parametrize("beta", [0.1, 0.5, 0.9])
def test_generalized_jsd_hand_value(beta):
    p, q = _softmax(TEACHER), _softmax(STUDENT)
    m = _mix(p, q, beta)
    expected = beta * _kl(p, m) + (1 - beta) * _kl(q, m)
    got = jensen_shannon(_one_position(STUDENT), _one_position(TEACHER), ALL_ONE, beta=beta)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_jsd_half_is_symmetric_and_bounded_by_log2():
    a, b = _one_position(STUDENT), _one_position(TEACHER)
    forward = jensen_shannon(a, b, ALL_ONE, beta=0.5).item()
    assert jensen_shannon(b, a, ALL_ONE, beta=0.5).item() == pytest.approx(forward, rel=1e-5)
    assert 0 < forward < math.log(2)


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.5])
def test_skew_kl_and_skew_reverse_kl_hand_values(alpha):
    p, q = _softmax(TEACHER), _softmax(STUDENT)
    student, teacher = _one_position(STUDENT), _one_position(TEACHER)
    assert skew_kl(student, teacher, ALL_ONE, skew=alpha).item() == pytest.approx(
        _kl(p, _mix(p, q, alpha)), rel=1e-5)
    assert skew_reverse_kl(student, teacher, ALL_ONE, skew=alpha).item() == pytest.approx(
        _kl(q, _mix(q, p, alpha)), rel=1e-5)


def test_sparse_teacher_buckets_the_tail_by_hand():
    # vocab 4, k = 2: the teacher's two top tokens are 0 and 1; tokens 2 and 3 form the tail.
    teacher, student = [3.0, 1.0, 0.0, -1.0], [0.0, 1.0, -0.5, 0.5]
    p, q = _softmax(teacher), _softmax(student)
    p_buckets = [p[0], p[1], p[2] + p[3]]
    q_buckets = [q[0], q[1], q[2] + q[3]]
    sparse = _top_k(_one_position(teacher), k=2)
    assert sorted(sparse.indices.flatten().tolist()) == [0, 1]
    got = forward_kl(_one_position(student), sparse, ALL_ONE).item()
    assert got == pytest.approx(_kl(p_buckets, q_buckets), rel=1e-5)
    # The bucketed KL is a lower bound of the full-vocabulary one (data-processing inequality).
    assert got < _kl(p, q) - 1e-3     # the two tails are not proportional here
    got_reverse = reverse_kl(_one_position(student), sparse, ALL_ONE).item()
    assert got_reverse == pytest.approx(_kl(q_buckets, p_buckets), rel=1e-5)


def test_padded_positions_are_ignored():
    # Two positions; the second is padding with wild logits that would dominate if counted.
    student = torch.tensor([[STUDENT, [50.0, -50.0, 0.0]]])
    teacher = torch.tensor([[TEACHER, [-50.0, 50.0, 0.0]]])
    mask = torch.tensor([[True, False]])
    p, q = _softmax(TEACHER), _softmax(STUDENT)
    assert forward_kl(student, teacher, mask).item() == pytest.approx(_kl(p, q), rel=1e-5)
    assert reverse_kl(student, teacher, mask).item() == pytest.approx(_kl(q, p), rel=1e-5)
    # And the mean is over the valid positions: two equal valid rows give the same value.
    both = torch.tensor([[True, True]])
    twice_s, twice_t = torch.tensor([[STUDENT, STUDENT]]), torch.tensor([[TEACHER, TEACHER]])
    assert forward_kl(twice_s, twice_t, both).item() == pytest.approx(_kl(p, q), rel=1e-5)


LOSSES = [forward_kl, reverse_kl, jensen_shannon, skew_kl, skew_reverse_kl]


@pytest.mark.parametrize("loss", LOSSES)
def test_zero_when_student_equals_teacher(loss):
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11) * 3
    mask = torch.ones(2, 5, dtype=torch.bool)
    assert loss(logits, logits.clone(), mask, temperature=2.0).item() == pytest.approx(0, abs=1e-6)
    sparse = _top_k(logits, k=4, temperature=2.0)
    assert loss(logits, sparse, mask, temperature=2.0).item() == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_dense_and_top_k_with_k_equal_vocab_agree(loss, temperature):
    torch.manual_seed(1)
    student, teacher = torch.randn(2, 4, 7), torch.randn(2, 4, 7) * 2
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    dense = loss(student, teacher, mask, temperature=temperature)
    sparse = loss(student, _top_k(teacher, k=7, temperature=temperature), mask,
                  temperature=temperature)
    assert dense.item() > 1e-3
    assert sparse.item() == pytest.approx(dense.item(), rel=1e-4)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("top_k", [None, 3])
def test_gradients_reach_the_student_only_at_valid_positions(loss, top_k):
    torch.manual_seed(2)
    student = torch.randn(1, 3, 6, requires_grad=True)
    teacher_logits = torch.randn(1, 3, 6) * 2
    teacher = teacher_logits if top_k is None else _top_k(teacher_logits, k=top_k)
    mask = torch.tensor([[True, True, False]])
    loss(student, teacher, mask).backward()
    grad = student.grad
    assert torch.isfinite(grad).all()
    assert grad[0, :2].abs().sum() > 1e-4
    assert grad[0, 2].abs().sum() == 0


def test_fp16_top_k_values_summing_over_one_stay_finite():
    # A near-certain teacher: its fp16 top-k log-probs can add up to slightly more than 1.
    teacher = _one_position([12.0, 0.0, -3.0, -4.0])
    sparse = _top_k(teacher, k=2)
    sparse = SparseTeacher(sparse.indices, (sparse.log_probs.half() + 1e-3).float())
    for loss in LOSSES:
        value = loss(_one_position([1.0, 0.0, 0.0, 0.0]), sparse, ALL_ONE)
        assert torch.isfinite(value) and value.item() >= 0


def test_lm_distill_loss_mixes_kd_and_next_token_ce_by_hand():
    # One sequence of 3 positions over vocab 3; labels = input ids, the last is padding, so only
    # position 0 predicts a real next token (label[1] = 2); positions 1 and 2 are ignored.
    student = torch.tensor([[STUDENT, [1.0, 1.0, 1.0], [9.0, 0.0, 0.0]]])
    teacher = torch.tensor([[TEACHER, [0.0, 5.0, 0.0], [0.0, 0.0, 9.0]]])
    labels = torch.tensor([[0, 2, IGNORE_INDEX]])
    p, q = _softmax(TEACHER, 2.0), _softmax(STUDENT, 2.0)
    kd = 4 * _kl(p, q)
    ce = -math.log(_softmax(STUDENT)[2])
    got = lm_distill_loss(student, teacher, labels, kind="forward_kl", alpha=0.3, temperature=2.0)
    assert got.item() == pytest.approx(0.3 * kd + 0.7 * ce, rel=1e-5)
    # The same loss from the top-k cache form with k = vocab.
    sparse = _top_k(teacher, k=3, temperature=2.0)
    got_sparse = lm_distill_loss(student, sparse, labels, kind="forward_kl", alpha=0.3,
                                 temperature=2.0)
    assert got_sparse.item() == pytest.approx(got.item(), rel=1e-5)
    # alpha = 0 is plain next-token cross-entropy, alpha = 1 the KD term alone.
    assert lm_distill_loss(student, teacher, labels, alpha=0.0).item() == pytest.approx(ce, rel=1e-5)
    p1, q1 = _softmax(TEACHER), _softmax(STUDENT)
    m = _mix(p1, q1, 0.2)
    jsd = 0.2 * _kl(p1, m) + 0.8 * _kl(q1, m)
    assert lm_distill_loss(student, teacher, labels, kind="jsd", alpha=1.0,
                           beta=0.2).item() == pytest.approx(jsd, rel=1e-5)


def test_mistakes_are_one_line_errors():
    s, t = _one_position(STUDENT), _one_position(TEACHER)
    labels = torch.tensor([[0]])
    with pytest.raises(EdgekdError, match="unknown distillation loss"):
        lm_distill_loss(s, t, labels, kind="l2")
    with pytest.raises(EdgekdError, match="beta"):
        jensen_shannon(s, t, ALL_ONE, beta=1.0)
    with pytest.raises(EdgekdError, match="temperature"):
        forward_kl(s, _top_k(t, k=2, temperature=1.0), ALL_ONE, temperature=2.0)
    with pytest.raises(EdgekdError, match="vocabulary"):
        forward_kl(s, torch.zeros(1, 1, 5), ALL_ONE)


# A vocabulary-trimmed student: teacher tokens 1 and 4 are dropped, the others renumbered.
TEACHER_TO_STUDENT = torch.tensor([0, -1, 1, 2, -1, 3])


def _student_ids(sparse):
    """The cached teacher ids read through TEACHER_TO_STUDENT (what TopKShardDataset's vocab_map does)."""
    return SparseTeacher(TEACHER_TO_STUDENT[sparse.indices.long()], sparse.log_probs, sparse.temperature)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_dropped_teacher_tokens_count_in_the_tail_by_hand(temperature):
    # Teacher top-3 = teacher tokens 0, 1, 2; token 1 is dropped, so the buckets are student
    # tokens 0 (teacher 0) and 1 (teacher 2), plus a tail holding teacher 1, 3, 4, 5.
    teacher, student = [3.0, 2.5, 1.0, 0.0, -1.0, -0.5], [0.2, 1.0, -0.5, 0.7]
    p, q = _softmax(teacher, temperature), _softmax(student, temperature)
    p_buckets = [p[0], p[2], 1 - p[0] - p[2]]
    q_buckets = [q[0], q[1], 1 - q[0] - q[1]]
    sparse = _student_ids(_top_k(_one_position(teacher), k=3, temperature=temperature))
    assert sorted(sparse.indices.flatten().tolist()) == [-1, 0, 1]
    t2 = temperature ** 2
    got = forward_kl(_one_position(student), sparse, ALL_ONE, temperature=temperature).item()
    assert got == pytest.approx(t2 * _kl(p_buckets, q_buckets), rel=1e-5)
    got = reverse_kl(_one_position(student), sparse, ALL_ONE, temperature=temperature).item()
    assert got == pytest.approx(t2 * _kl(q_buckets, p_buckets), rel=1e-5)
    m = _mix(p_buckets, q_buckets, 0.3)
    got = jensen_shannon(_one_position(student), sparse, ALL_ONE, beta=0.3, temperature=temperature)
    assert got.item() == pytest.approx(t2 * (0.3 * _kl(p_buckets, m) + 0.7 * _kl(q_buckets, m)), rel=1e-5)
    # Read without the map, teacher id 5 would be outside the 4-token student: a clear error.
    with pytest.raises(EdgekdError, match="vocab_map"):
        forward_kl(_one_position(student), _top_k(_one_position(teacher), k=6), ALL_ONE)


@pytest.mark.parametrize("loss", LOSSES)
def test_dropped_tokens_keep_the_loss_and_gradient_finite(loss):
    torch.manual_seed(3)
    student = torch.randn(2, 3, 4, requires_grad=True)
    teacher_logits = torch.randn(2, 3, 6) * 2
    teacher_logits[0, 1, [1, 4]] = 20.0     # a position whose top-2 are both dropped tokens
    sparse = _student_ids(_top_k(teacher_logits, k=2))
    assert (sparse.indices[0, 1] == -1).all() and (sparse.indices >= 0).any()
    mask = torch.ones(2, 3, dtype=torch.bool)
    value = loss(student, sparse, mask)
    value.backward()
    assert torch.isfinite(value) and value.item() > 1e-3
    assert torch.isfinite(student.grad).all() and student.grad.abs().sum() > 1e-4
    # The all-dropped position has only the tail bucket on both sides: nothing to match there.
    alone = torch.zeros(2, 3, dtype=torch.bool)
    alone[0, 1] = True
    assert loss(student, sparse, alone).item() == pytest.approx(0, abs=1e-6)


def test_a_vocab_mapped_teacher_needs_a_tail_in_the_student():
    sparse = _student_ids(_top_k(torch.randn(1, 1, 6), k=5))
    with pytest.raises(EdgekdError, match="no tail"):
        forward_kl(torch.randn(1, 1, 4), sparse, ALL_ONE)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_the_students_logits_are_never_changed_in_place(dtype, temperature):
    """The sparse path masks the top-k in place in its own float32 copy, never in the input."""
    torch.manual_seed(4)
    logits = (torch.randn(2, 3, 9) * 3).to(dtype).requires_grad_(True)
    before = logits.detach().clone()
    for teacher in (_top_k(torch.randn(2, 3, 9), k=3, temperature=temperature), torch.randn(2, 3, 9)):
        forward_kl(logits, teacher, torch.ones(2, 3, dtype=torch.bool), temperature=temperature).backward()
        assert torch.equal(logits.detach(), before)
