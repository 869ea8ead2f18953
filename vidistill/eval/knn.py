"""DINO's weighted k-NN classifier on L2-normalised [CLS] features (Caron et al. 2021,
``eval_knn.py``): cosine similarity, the k nearest training samples vote with weight
``exp(sim / T)``; top-1 accuracy."""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def weighted_knn_predict(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk: int = 256,
) -> torch.Tensor:
    """Predicted class per test sample (features need not be normalised: they are here)."""
    train = F.normalize(train_feats.float(), dim=1)
    test = F.normalize(test_feats.float(), dim=1)
    labels = train_labels.long()
    k = min(k, train.shape[0])
    preds = []
    for start in range(0, test.shape[0], chunk):
        sim = test[start : start + chunk] @ train.T  # (b, N)
        top_sim, top_idx = sim.topk(k, dim=1)
        weights = (top_sim / temperature).exp()
        votes = torch.zeros(sim.shape[0], num_classes, dtype=weights.dtype)
        votes.scatter_add_(1, labels[top_idx], weights)
        preds.append(votes.argmax(1))
    return torch.cat(preds)


def knn_accuracy(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
) -> float:
    """Top-1 accuracy in [0, 1]."""
    pred = weighted_knn_predict(train_feats, train_labels, test_feats, num_classes, k, temperature)
    return float((pred == test_labels.long()).float().mean())
