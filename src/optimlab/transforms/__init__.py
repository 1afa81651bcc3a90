"""The math of every optimizer, one small module per family, each transform per tensor."""

from optimlab.transforms.adadelta import ScaleByAdadelta
from optimlab.transforms.adaptive import ScaleByAdagrad, ScaleByAdam, ScaleByRMS
from optimlab.transforms.decay import AddDecayedWeights, DecoupledWeightDecay
from optimlab.transforms.momentum import Momentum
from optimlab.transforms.scale import Negate, ScaleByLearningRate
from optimlab.transforms.sign import ScaleByRprop

__all__ = [
    "AddDecayedWeights",
    "DecoupledWeightDecay",
    "Momentum",
    "Negate",
    "ScaleByAdadelta",
    "ScaleByAdagrad",
    "ScaleByAdam",
    "ScaleByLearningRate",
    "ScaleByRMS",
    "ScaleByRprop",
]
