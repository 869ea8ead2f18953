"""Gram anchoring (DINOv3, Siméoni et al. 2025, sec. 4.2): keep the patch-to-patch similarity
structure of the student close to that of a frozen "Gram teacher", here the init itself.

For one image with L2-normalised patch features X_S (student) and X_G (frozen init), both P×D,

    L_Gram = ‖ X_S X_Sᵀ − X_G X_Gᵀ ‖²_F / P²

(DINOv3 writes the Frobenius norm; its code averages the squared differences, as here, so the
weight does not depend on the grid size). Only the *relations* between patches are anchored,
not the features themselves: the student may rotate or re-scale its feature space to fit the
new video, but what was similar to what in the init stays so. At step 0 the student's weights
are the init's, yet the loss is not 0: the student runs with drop-path and the anchor without,
so their patch features differ (with drop-path 0 it is 0); it grows as the student's patch
geometry moves away from the init's.

The frozen init and the term it adds to an objective are the adaptation recipe's
(:class:`vidistill.train.adaptation.GramAnchor`); this module is the equation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gram_matrix(patches: torch.Tensor) -> torch.Tensor:
    """(N, P, D) patch features -> (N, P, P) cosine similarities."""
    x = F.normalize(patches.float(), dim=-1)
    return x @ x.transpose(1, 2)


def gram_loss(student_patches: torch.Tensor, anchor_patches: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the two Gram matrices (the equation above, averaged over N)."""
    return (gram_matrix(student_patches) - gram_matrix(anchor_patches)).pow(2).mean()
