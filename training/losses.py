"""Distillation and listwise ranking losses over padded lists.

Every loss takes `scores` (the student's, [lists, items]), `relevance` (the teacher's,
same shape) and `mask` (True where an item exists; lists are padded on the right), and
returns the mean over lists. Teacher scores are logits; where a loss needs graded
relevance in [0, 1] it uses sigmoid(teacher logit / temperature).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

NEGATIVE_INFINITY = -1e9  # masked logits: finite, so 0 * NEGATIVE_INFINITY stays 0


def score_distillation(scores, teacher, mask, temperature: float = 1.0):
    """Pointwise: binary cross-entropy between sigmoid(student / T) and sigmoid(teacher / T), times T^2
    (so the gradient scale does not shrink as T grows)."""
    targets = torch.sigmoid(teacher / temperature)
    per_item = F.binary_cross_entropy_with_logits(scores / temperature, targets, reduction="none")
    return _mean_over_lists(per_item * mask, mask) * temperature**2


def listnet(scores, teacher, mask, temperature: float = 1.0):
    """ListNet (top-1): cross-entropy of the student's softmax against the teacher's softmax(teacher / T)."""
    targets = torch.softmax(teacher.masked_fill(~mask, NEGATIVE_INFINITY) / temperature, dim=1)
    log_probabilities = torch.log_softmax(scores.masked_fill(~mask, NEGATIVE_INFINITY), dim=1)
    return -(targets * log_probabilities * mask).sum(dim=1).mean()


def listmle(scores, teacher, mask, temperature: float = 1.0):
    """ListMLE: negative Plackett-Luce log-likelihood of the teacher's order under the student's scores."""
    order = teacher.masked_fill(~mask, NEGATIVE_INFINITY).argsort(dim=1, descending=True)
    ordered = scores.gather(1, order).masked_fill(~mask.gather(1, order), NEGATIVE_INFINITY)
    # log sum_{k >= i} exp(s_k): a reversed cumulative logsumexp.
    tail_logsumexp = torch.logcumsumexp(ordered.flip(1), dim=1).flip(1)
    per_position = (tail_logsumexp - ordered) * mask.gather(1, order)
    return per_position.sum(dim=1).mean()


def approx_ndcg(scores, teacher, mask, temperature: float = 1.0, alpha: float = 1.0):
    """ApproxNDCG (Qin et al. 2010): 1 - NDCG with each item's rank replaced by the smooth
    1 + sum_j sigmoid((s_j - s_i) / alpha)."""
    gains = _gains(teacher, mask, temperature)
    differences = (scores.unsqueeze(1) - scores.unsqueeze(2)) / alpha  # [list, i, j] = s_j - s_i
    pair_mask = (mask.unsqueeze(1) & mask.unsqueeze(2)).float()
    pair_mask = pair_mask * (1 - torch.eye(scores.shape[1], device=scores.device))
    approx_rank = 1 + (torch.sigmoid(differences) * pair_mask).sum(dim=2)
    dcg = (gains / torch.log2(1 + approx_rank)).sum(dim=1)
    return (1 - dcg / _ideal_dcg(gains)).mean()


def lambdaloss(scores, teacher, mask, temperature: float = 1.0, mu: float = 10.0, sigma: float = 1.0):
    """LambdaLoss with the NDCG-Loss2++ weighting (Wang et al. 2018):
    sum over pairs with y_i > y_j of -(rho_ij + mu * delta_ij) * |G_i - G_j| * log2 sigmoid(sigma (s_i - s_j)),
    where i, j are positions in the student's current ranking, G = gain / ideal DCG,
    rho_ij = |1/D(i) - 1/D(j)|, delta_ij = |1/D(|i-j|) - 1/D(|i-j|+1)|, D(r) = log2(1 + r)."""
    items = scores.shape[1]
    order = scores.detach().masked_fill(~mask, NEGATIVE_INFINITY).argsort(dim=1, descending=True)
    ranked_scores, ranked_mask = scores.gather(1, order), mask.gather(1, order)
    relevance = torch.sigmoid(teacher / temperature).gather(1, order)
    gains = (torch.pow(2.0, relevance) - 1) * ranked_mask
    normalised = gains / _ideal_dcg(gains).unsqueeze(1)

    positions = torch.arange(1, items + 1, dtype=scores.dtype, device=scores.device)
    inverse_discount = 1 / torch.log2(1 + positions)
    rho = (inverse_discount.unsqueeze(1) - inverse_discount.unsqueeze(0)).abs()
    distance = (positions.unsqueeze(1) - positions.unsqueeze(0)).abs()
    delta = (1 / torch.log2(1 + distance.clamp(min=1)) - 1 / torch.log2(2 + distance)).abs()
    delta = delta * (distance > 0)
    weights = (rho + mu * delta).unsqueeze(0) * (normalised.unsqueeze(2) - normalised.unsqueeze(1)).abs()

    more_relevant = (relevance.unsqueeze(2) > relevance.unsqueeze(1)) & ranked_mask.unsqueeze(2) & ranked_mask.unsqueeze(1)
    margins = sigma * (ranked_scores.unsqueeze(2) - ranked_scores.unsqueeze(1))
    per_pair = -weights * F.logsigmoid(margins) / math.log(2)
    return (per_pair * more_relevant).sum(dim=(1, 2)).mean()


LISTWISE_LOSSES = {"listnet": listnet, "listmle": listmle, "approx-ndcg": approx_ndcg, "lambdaloss": lambdaloss}


def _gains(teacher, mask, temperature):
    return (torch.pow(2.0, torch.sigmoid(teacher / temperature)) - 1) * mask


def _ideal_dcg(gains):
    ideal = gains.sort(dim=1, descending=True).values
    discounts = 1 / torch.log2(torch.arange(2, gains.shape[1] + 2, dtype=gains.dtype, device=gains.device))
    return (ideal * discounts).sum(dim=1).clamp(min=1e-12)


def _mean_over_lists(per_item, mask):
    return (per_item.sum(dim=1) / mask.sum(dim=1).clamp(min=1)).mean()
