"""The supervised multi-task detector: a self-normalising network with shake-shake residual blocks,
one binary head per class and a multi-class head, and Central Moment Discrepancy (CMD) domain
adaptation towards unlabelled traffic of the domain to be scored.

Network (:class:`MultitaskClassifier`, a plain ``nn.Module``):

- inputs sent through a per-feature quantile map (piecewise linear through the training quantiles to
  normal scores, ``input_transform``), then standardised with the training mean and standard
  deviation (clipped to ``+-input_clip``);
- a SELU encoder of ``encoder_layers`` layers: a dense input layer, then shake-shake residual blocks
  ``out = x + a * B1(x) + (1 - a) * B2(x)`` whose two branches are dense SELU layers; ``a ~ U(0, 1)``
  per row in the forward pass and an independent ``b ~ U(0, 1)`` weighs the branches' gradients in
  the backward pass; at evaluation ``a = 0.5``. Every linear layer has LeCun-normal initialisation,
  and AlphaDropout follows every SELU of the encoder;
- a latent layer bounded to ``[0, 1]`` by a sigmoid (CMD needs bounded activations);
- heads on the latent: one binary (one-vs-rest) head per class and a multi-class softmax head,
  trained jointly; the multi-class head makes the prediction.

Training (through the one :class:`~nadkit.models.trainer.Trainer`): cross-entropy of the multi-class
head plus ``binary_weight`` x the mean binary cross-entropy of the binary heads plus ``cmd_weight`` x
CMD between the latent of labelled source rows and of unlabelled target rows. Batches are drawn by a
class-weighted sampler (class ``c`` drawn with probability proportional to ``count_c ** (1 -
class_balance)``). Early stopping watches the validation NAD 2021 challenge score when the labels
are NAD's classes, else the validation macro F-beta. ``seeds`` networks are trained with
consecutive seeds and their class probabilities averaged.

Scores: ``1 - P(normal)`` of the averaged probabilities. Contributions (:class:`IntegratedGradients`):
integrated gradients of that score along the straight path from the mean normal training row to the
row, so each feature's value is signed (positive: the feature moves the row towards the attack
classes). The path integral is a midpoint sum over ``attribution_steps`` points, with the network's
input gradient written out layer by layer (no autograd, so the attribution exports to ONNX); the
score of the reference row and the remainder of the sum are spread evenly over the features, so a
row's contributions add up to its score exactly. They cost about ``2 * attribution_steps`` passes
over the networks per row, against one for the score, so scoring explains only the alerts
(``costly_contributions``, see :mod:`nadkit.detection.detect`).

Modules: :mod:`~nadkit.models.multitask.config` (:class:`MultitaskConfig`),
:mod:`~nadkit.models.multitask.layers` (SELU layers, alpha dropout, shake-shake blocks, the binary
heads and CMD), :mod:`~nadkit.models.multitask.quantile` (the input quantile map and
standardisation), :mod:`~nadkit.models.multitask.network` (the network, the exportable classifier and
its integrated gradients) and :mod:`~nadkit.models.multitask.detector` (:class:`MultitaskDetector`:
training, scoring, attribution and saving).
"""

from __future__ import annotations

from nadkit.models.multitask.config import MultitaskConfig
from nadkit.models.multitask.detector import (
    CLASSES_KEY,
    DETECTORS,
    MultitaskDetector,
    SeedEpochReport,
    class_draw_probabilities,
    selection_score,
)
from nadkit.models.multitask.layers import (
    SELU_ALPHA,
    SELU_SCALE,
    AlphaDropout,
    BinaryHeads,
    ShakeShakeBlock,
    central_moment_discrepancy,
    lecun_normal_,
    shake_shake,
)
from nadkit.models.multitask.layers import _selu_derivative as _selu_derivative
from nadkit.models.multitask.network import IntegratedGradients, MultitaskClassifier, MultitaskNetwork
from nadkit.models.multitask.quantile import Standardize, quantile_map

__all__ = [
    "CLASSES_KEY",
    "DETECTORS",
    "SELU_ALPHA",
    "SELU_SCALE",
    "AlphaDropout",
    "BinaryHeads",
    "IntegratedGradients",
    "MultitaskClassifier",
    "MultitaskConfig",
    "MultitaskDetector",
    "MultitaskNetwork",
    "SeedEpochReport",
    "ShakeShakeBlock",
    "Standardize",
    "central_moment_discrepancy",
    "class_draw_probabilities",
    "lecun_normal_",
    "quantile_map",
    "selection_score",
    "shake_shake",
]
