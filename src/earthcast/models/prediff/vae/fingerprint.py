"""A short identity of a trained VAE's weights.

The latent diffusion model and the alignment network U_φ both work in one VAE's latent space;
paired with another VAE, guidance steers by a meaningless statistic without any error. Recording
``vae_fingerprint`` in every stage's checkpoint lets the stages be checked against each other.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def vae_fingerprint(vae: nn.Module) -> str:
    """16 hex digits of SHA-256 over the state dict (names, shapes, float32 values), so equal
    weights give equal fingerprints on any device and retraining gives another one."""
    digest = hashlib.sha256()
    for name, tensor in sorted(vae.state_dict().items()):
        values = tensor.detach().to("cpu", torch.float32).contiguous()
        digest.update(name.encode())
        digest.update(str(tuple(values.shape)).encode())
        digest.update(values.numpy().tobytes())
    return digest.hexdigest()[:16]
