"""The HUSE losses (arXiv 1911.05978), as pure torch functions on a batch of embeddings.

Distances are cosine distances d(u, v) = 1 − cos(u, v) of L2-normalised embeddings, so
they lie in [0, 2] whatever the embeddings' scale.

- `gap_loss`: pulls each product's image and text embeddings together (the cross-modal gap).
- `semantic_loss`: makes the distance between two products' fused embeddings follow the
  distance between their classes' names, for the pairs that are close on both counts.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def cosine_distances(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """[len(a), len(b)] pairwise 1 − cos (b defaults to a)."""
    a = F.normalize(a, dim=-1)
    b = a if b is None else F.normalize(b, dim=-1)
    return 1.0 - a @ b.T


def gap_loss(image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of d(image_m, text_m)."""
    return (1.0 - F.cosine_similarity(image, text, dim=-1)).mean()


def semantic_mask(distances: torch.Tensor, class_distances: torch.Tensor, margin: float) -> torch.Tensor:
    """σ_mn = 1 where both the classes and the embeddings are closer than `margin`: far pairs
    are left alone, so the loss shapes neighbourhoods, not the whole space."""
    return ((class_distances < margin) & (distances < margin)).to(distances.dtype)


def semantic_loss(fused: torch.Tensor, labels: torch.Tensor, class_distance: torch.Tensor,
                  margin: float) -> torch.Tensor:
    """Mean over all N² pairs (m, n) of σ_mn·(d(fused_m, fused_n) − A[y_m, y_n])², where A is
    the [n_classes, n_classes] distance between class names."""
    distances = cosine_distances(fused)
    target = class_distance[labels][:, labels].to(distances.dtype)
    sigma = semantic_mask(distances.detach(), target, margin)
    return (sigma * (distances - target) ** 2).mean()
