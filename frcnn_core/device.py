"""The one setting that chooses where tensors live: CUDA when available, else the CPU.

``FRCNN_DEVICE=cpu`` (or ``cuda``, ``cuda:1``) in the environment overrides the choice.
"""

from __future__ import annotations

import os

import torch

DEVICE_ENV = "FRCNN_DEVICE"


def default_device() -> torch.device:
    """CUDA when available, else the CPU; ``$FRCNN_DEVICE`` overrides."""
    wanted = os.environ.get(DEVICE_ENV, "").strip()
    if wanted:
        device = torch.device(wanted)
        if device.type == "cuda" and not torch.cuda.is_available():
            return torch.device("cpu")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name(device: torch.device) -> str:
    """A human-readable name: the GPU's model for CUDA, "CPU" otherwise."""
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    return f"CPU ({torch.get_num_threads()} threads)"
