"""Losses against values computed by hand (plain math, not torch)."""

import math

import pytest
import torch

from edgekd.distillation.losses import (IGNORE_INDEX, attention_loss, hidden_state_loss,
                                        hinton_kd_loss, soft_target_loss)


def _softmax(xs):
    exps = [math.exp(x) for x in xs]
    return [e / sum(exps) for e in exps]


def _kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def test_soft_target_loss_matches_hand_value_with_t_squared():
    # teacher [2, 0], student [0, 0], T = 2:
    # p_t = softmax([1, 0]) = [0.7311, 0.2689], p_s = [0.5, 0.5]; KL = 0.11094; x T^2 = 0.44378
    expected = 4 * _kl(_softmax([1.0, 0.0]), [0.5, 0.5])
    assert expected == pytest.approx(0.44378, abs=1e-4)
    got = soft_target_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 0.0]]), temperature=2.0)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_t_squared_factor_scales_the_soft_term():
    s, t = torch.tensor([[0.3, -1.0, 0.5]]), torch.tensor([[1.0, 0.2, -0.4]])
    for temperature in (1.0, 3.0, 8.0):
        kl = _kl(_softmax([x / temperature for x in t[0].tolist()]),
                 _softmax([x / temperature for x in s[0].tolist()]))
        assert soft_target_loss(s, t, temperature).item() == pytest.approx(kl * temperature ** 2, rel=1e-5)


def test_hinton_mix_of_soft_and_hard_terms():
    student, teacher = torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 0.0]])
    labels = torch.tensor([0])
    soft = 4 * _kl(_softmax([1.0, 0.0]), [0.5, 0.5])
    hard = math.log(2.0)  # CE of a uniform 2-way prediction
    got = hinton_kd_loss(student, teacher, labels, temperature=2.0, alpha=0.7)
    assert got.item() == pytest.approx(0.7 * soft + 0.3 * hard, rel=1e-5)
    assert got.item() == pytest.approx(0.51859, abs=1e-4)


def test_unlabeled_examples_contribute_the_soft_term_only():
    student = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    teacher = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, IGNORE_INDEX])
    soft = 4 * (_kl(_softmax([1.0, 0.0]), [0.5, 0.5])
                + _kl(_softmax([0.0, 0.5]), _softmax([0.5, -0.5]))) / 2   # batch mean over both
    hard = math.log(2.0)                                                   # labelled row only
    got = hinton_kd_loss(student, teacher, labels, temperature=2.0, alpha=0.5)
    assert got.item() == pytest.approx(0.5 * soft + 0.5 * hard, rel=1e-5)
    # A batch with no label at all is the soft term alone (scaled by alpha).
    only_unlabeled = hinton_kd_loss(student, teacher, torch.tensor([IGNORE_INDEX] * 2), 2.0, 0.5)
    assert only_unlabeled.item() == pytest.approx(0.5 * soft, rel=1e-5)


def test_hidden_state_loss_ignores_padding():
    s = torch.zeros(1, 3, 2)
    t = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])   # last token is padding
    mask = torch.tensor([[1, 1, 0]])
    # mean over 2 real tokens x 2 dims of squared error: (1 + 1 + 9 + 9) / 4 = 5
    assert hidden_state_loss(s, t, mask).item() == pytest.approx(5.0)


def test_attention_loss_is_kl_of_distributions():
    a_t = torch.tensor([[[[0.5, 0.5], [0.9, 0.1]]]])      # [B=1, heads=1, L=2, L=2]
    a_s = torch.tensor([[[[0.5, 0.5], [0.5, 0.5]]]])
    mask = torch.tensor([[1, 1]])
    expected = (0.0 + _kl([0.9, 0.1], [0.5, 0.5])) / 2
    assert attention_loss(a_s, a_t, mask).item() == pytest.approx(expected, rel=1e-4)
    assert attention_loss(a_t, a_t, mask).item() == pytest.approx(0.0, abs=1e-6)
