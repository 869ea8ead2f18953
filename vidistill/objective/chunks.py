"""How many rows of a [rows, out_dim] loss tensor are worked on at a time.

The dense loss and Sinkhorn-Knopp work on [B·(K−1)·P, out_dim] matrices (at the paper's sizes
25088 × 16384, 1.6 GB each) a chunk of rows at a time, so that no temporary is held whole. The
size that is best differs by device:

* CUDA: ~16M elements (64 MB) per temporary: few kernel launches, and memory stays bounded.
* CPU: ~1M elements (4 MB): a chunk's temporaries then stay in the cache between the ~10
  elementwise passes made over them, instead of each pass going to memory. Measured on the
  2-core VM (`benchmarks/README.md`, "Session 11"): the chunked cross-entropy's forward +
  backward 2.4-2.9x faster than with 16M-element chunks, Sinkhorn-Knopp 1.3-1.8x.
"""

from __future__ import annotations

import torch

CUDA_CHUNK_ELEMENTS = 1 << 24
CPU_CHUNK_ELEMENTS = 1 << 20


def chunk_elements(device: torch.device) -> int:
    return CUDA_CHUNK_ELEMENTS if device.type == "cuda" else CPU_CHUNK_ELEMENTS


def chunk_rows(device: torch.device, row_length: int, elements: int | None = None) -> int:
    """Rows per chunk for rows of ``row_length`` (``elements`` per chunk, or the device's)."""
    return max(1, (elements or chunk_elements(device)) // row_length)
