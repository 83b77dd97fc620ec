"""Distillation and listwise losses against values worked out by hand from their definitions."""

import math

import pytest
import torch

from polyrank.training.losses import LISTWISE_LOSSES, approx_ndcg, lambdaloss, listmle, listnet, score_distillation


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def tensors(scores, teacher):
    return torch.tensor([scores], dtype=torch.float64), torch.tensor([teacher], dtype=torch.float64), torch.ones(1, len(scores), dtype=torch.bool)


def test_score_distillation_is_tempered_binary_cross_entropy():
    s, t, m = tensors([1.0], [3.0])
    p, q = sigmoid(3.0 / 2), sigmoid(1.0 / 2)
    expected = -(p * math.log(q) + (1 - p) * math.log(1 - q)) * 4
    assert score_distillation(s, t, m, temperature=2.0).item() == pytest.approx(expected)


def test_listnet_is_cross_entropy_of_top_one_probabilities():
    s, t, m = tensors([1.0, 2.0], [0.0, math.log(3)])
    # teacher softmax = (1/4, 3/4); student log-softmax = (-log(1+e), -log(1+1/e))
    expected = 0.25 * math.log(1 + math.e) + 0.75 * math.log(1 + math.exp(-1))
    assert listnet(s, t, m).item() == pytest.approx(expected)


def test_listmle_is_plackett_luce_likelihood_of_teacher_order():
    s, t, m = tensors([1.0, 2.0, 0.0], [3.0, 1.0, 2.0])
    # teacher order: items 0, 2, 1 -> student scores 1, 0, 2
    expected = (math.log(math.e + 1 + math.e**2) - 1) + (math.log(1 + math.e**2) - 0) + 0
    assert listmle(s, t, m).item() == pytest.approx(expected)


def test_approx_ndcg_uses_sigmoid_ranks():
    s, t, m = tensors([0.0, 1.0], [2.0, -1.0])
    g0, g1 = 2 ** sigmoid(2.0) - 1, 2 ** sigmoid(-1.0) - 1
    r0, r1 = 1 + sigmoid(1.0), 1 + sigmoid(-1.0)
    dcg = g0 / math.log2(1 + r0) + g1 / math.log2(1 + r1)
    ideal = g0 + g1 / math.log2(3)
    assert approx_ndcg(s, t, m).item() == pytest.approx(1 - dcg / ideal)


def test_lambdaloss_ndcg2pp_weights_the_misordered_pair():
    s, t, m = tensors([0.0, 1.0], [2.0, -1.0])
    # the student ranks item 1 first, the teacher prefers item 0: one misordered pair
    g0, g1 = 2 ** sigmoid(2.0) - 1, 2 ** sigmoid(-1.0) - 1
    ideal = g0 + g1 / math.log2(3)
    rho = abs(1 / math.log2(2) - 1 / math.log2(3))
    delta = abs(1 / math.log2(2) - 1 / math.log2(3))  # positions 1 apart
    weight = (rho + 10 * delta) * abs(g0 - g1) / ideal
    expected = -weight * math.log2(sigmoid(0.0 - 1.0))
    assert lambdaloss(s, t, m, mu=10.0).item() == pytest.approx(expected)


def test_lambdaloss_is_zero_only_when_nothing_to_learn():
    s, t, m = tensors([0.0, 1.0], [0.5, 0.5])
    assert lambdaloss(s, t, m).item() == 0.0


@pytest.mark.parametrize("name", sorted(LISTWISE_LOSSES))
def test_padding_does_not_change_the_loss(name):
    loss = LISTWISE_LOSSES[name]
    s, t, m = tensors([0.3, -1.2, 2.0], [1.0, -0.5, 0.2])
    padded_s = torch.cat([s, torch.tensor([[99.0]], dtype=torch.float64)], dim=1)
    padded_t = torch.cat([t, torch.tensor([[-99.0]], dtype=torch.float64)], dim=1)
    padded_m = torch.cat([m, torch.tensor([[False]])], dim=1)
    assert loss(padded_s, padded_t, padded_m).item() == pytest.approx(loss(s, t, m).item())


@pytest.mark.parametrize("name", sorted(LISTWISE_LOSSES))
def test_agreeing_with_the_teacher_scores_lower(name):
    loss = LISTWISE_LOSSES[name]
    teacher = [3.0, 1.0, -1.0, -3.0]
    _, t, m = tensors(teacher, teacher)
    agree = torch.tensor([[3.0, 1.0, -1.0, -3.0]], dtype=torch.float64)
    reverse = torch.tensor([[-3.0, -1.0, 1.0, 3.0]], dtype=torch.float64)
    assert loss(agree, t, m).item() < loss(reverse, t, m).item()


def test_the_cli_offers_exactly_the_losses_there_are():
    from polyrank.training.cli import LISTWISE_LOSS_NAMES

    assert set(LISTWISE_LOSS_NAMES) == set(LISTWISE_LOSSES)
