"""The math of every optimizer, one small module per family, each transform per tensor."""

from optimlab.transforms.adam_variants import ScaleByAdamax, ScaleByNAdam, ScaleByRAdam
from optimlab.transforms.adaptive import ScaleByAdagrad, ScaleByAdam, ScaleByRMS
from optimlab.transforms.decay import AddDecayedWeights, DecoupledWeightDecay
from optimlab.transforms.momentum import Momentum
from optimlab.transforms.scale import Negate, ScaleByLearningRate

__all__ = [
    "AddDecayedWeights",
    "DecoupledWeightDecay",
    "Momentum",
    "Negate",
    "ScaleByAdagrad",
    "ScaleByAdam",
    "ScaleByAdamax",
    "ScaleByLearningRate",
    "ScaleByNAdam",
    "ScaleByRAdam",
    "ScaleByRMS",
]
