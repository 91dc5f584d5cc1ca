"""nadkit's Adam: torch's update on the CPU to the last bit, without importing the compiler."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from nadkit.errors import ConfigError
from nadkit.models.adam import Adam


def _trained(make_optimiser, weight_decay: float, steps: int = 40) -> list[torch.Tensor]:
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(12, 16), nn.SELU(), nn.Linear(16, 3), nn.ReLU(), nn.Linear(3, 12))
    spare = nn.Linear(2, 2)  # has no gradient in every other step: torch counts its steps apart
    optimiser = make_optimiser([*network.parameters(), *spare.parameters()], weight_decay)
    generator = torch.Generator().manual_seed(1)
    for step in range(steps):
        x = torch.randn(32, 12, generator=generator)
        optimiser.zero_grad()
        loss = torch.mean((network(x) - x) ** 2)
        if step % 2:
            loss = loss + spare(x[:, :2]).pow(2).mean()
        loss.backward()
        optimiser.step()
    return [p.detach().clone() for p in [*network.parameters(), *spare.parameters()]]


@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
def test_the_same_weights_as_torchs_adam(weight_decay: float) -> None:
    ours = _trained(lambda params, wd: Adam(params, lr=3e-3, weight_decay=wd), weight_decay)
    theirs = _trained(lambda params, wd: torch.optim.Adam(params, lr=3e-3, weight_decay=wd), weight_decay)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    before = _trained(lambda params, wd: Adam(params, lr=3e-3, weight_decay=wd), weight_decay, steps=0)
    assert not all(torch.equal(a, b) for a, b in zip(ours, before, strict=True))


def test_bad_settings_are_refused() -> None:
    layer = nn.Linear(2, 2)
    with pytest.raises(ConfigError, match="no parameters"):
        Adam([])
    with pytest.raises(ConfigError, match="lr > 0"):
        Adam(layer.parameters(), lr=0.0)
    with pytest.raises(ConfigError, match="betas"):
        Adam(layer.parameters(), betas=(0.9, 1.0))


def test_training_does_not_import_the_compiler() -> None:
    """torch's optimisers import torch._dynamo (about two seconds) when built; a fit here does not."""
    code = (
        "import sys, numpy as np\n"
        "from nadkit.models.autoencoder import Autoencoder, AutoencoderConfig\n"
        "from nadkit.features.data import DetectorData\n"
        "x = np.random.default_rng(0).normal(size=(200, 6)).astype('float32')\n"
        "data = DetectorData(x, tuple(f'f{i}' for i in range(6)))\n"
        "Autoencoder(AutoencoderConfig(hidden=(8,), bottleneck=2, epochs=2, device='cpu')).fit(data)\n"
        "print('torch._dynamo' in sys.modules, 'sklearn' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]
