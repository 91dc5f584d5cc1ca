"""Adam, as the training loop uses it.

The same update as ``torch.optim.Adam`` with its defaults on the CPU (one tensor at a time, L2 weight
decay added to the gradient, bias-corrected moments, ``eps`` added after the square root), so a
network trains to the same weights. It exists because constructing torch's optimiser imports
``torch._dynamo`` (its methods are wrapped to keep the compiler out), about two seconds of every
training process here; this loop needs none of what that import brings. On a GPU the trainer keeps
torch's optimiser, whose multi-tensor kernels launch a few kernels a step instead of several a
parameter, and whose import cost is small beside GPU training.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from nadkit.errors import ConfigError

if TYPE_CHECKING:
    import torch


class Adam:
    """Adam over ``params`` (Kingma and Ba, 2015) with L2 ``weight_decay`` added to each gradient."""

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        import torch

        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ConfigError("the optimiser got no parameters to train")
        if not lr > 0 or not eps > 0 or weight_decay < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ConfigError(
                f"Adam needs lr > 0, eps > 0, weight_decay >= 0 and betas in [0, 1): got lr={lr}, "
                f"eps={eps}, weight_decay={weight_decay}, betas={betas}"
            )
        self.lr, self.eps, self.weight_decay = float(lr), float(eps), float(weight_decay)
        self.beta1, self.beta2 = (float(b) for b in betas)
        #: updates each parameter has had (torch counts per parameter: one without a gradient is skipped)
        self.steps = [0] * len(self.params)
        self._first = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self._second = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]

    def zero_grad(self) -> None:
        """Drop the gradients (the next backward pass allocates them afresh)."""
        for param in self.params:
            param.grad = None

    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        import torch

        with torch.no_grad():
            for i, (param, first, second) in enumerate(
                zip(self.params, self._first, self._second, strict=True)
            ):
                grad = param.grad
                if grad is None:
                    continue
                self.steps[i] += 1
                if self.weight_decay != 0:
                    grad = grad.add(param, alpha=self.weight_decay)
                first.lerp_(grad, 1 - self.beta1)
                second.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
                step_size = self.lr / (1 - self.beta1 ** self.steps[i])
                bias_correction2_sqrt = (1 - self.beta2 ** self.steps[i]) ** 0.5
                denominator = (second.sqrt() / bias_correction2_sqrt).add_(self.eps)
                param.addcdiv_(first, denominator, value=-step_size)


__all__ = ["Adam"]
