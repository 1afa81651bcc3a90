"""The math of every optimizer, one small module per family, each transform per tensor."""

from optimlab.transforms.adaptive import ScaleByAdagrad, ScaleByAdam, ScaleByRMS
from optimlab.transforms.decay import AddDecayedWeights, DecoupledWeightDecay
from optimlab.transforms.momentum import EMAMomentum, Momentum
from optimlab.transforms.orthogonal import Orthogonalize, ScaleByAdjustedLearningRate
from optimlab.transforms.scale import Negate, ScaleByLearningRate

__all__ = [
    "AddDecayedWeights",
    "DecoupledWeightDecay",
    "EMAMomentum",
    "Momentum",
    "Negate",
    "Orthogonalize",
    "ScaleByAdagrad",
    "ScaleByAdam",
    "ScaleByAdjustedLearningRate",
    "ScaleByLearningRate",
    "ScaleByRMS",
]
