"""The math of every optimizer, one small module per family, each transform per tensor."""

from optimlab.transforms.adadelta import ScaleByAdadelta
from optimlab.transforms.adam_variants import ScaleByAdamax, ScaleByNAdam, ScaleByRAdam
from optimlab.transforms.adaptive import ScaleByAdagrad, ScaleByAdam, ScaleByRMS, ScaleBySparseAdam
from optimlab.transforms.averaging import IterateAveraging, ScaleByDecayingStepSize
from optimlab.transforms.decay import AddDecayedWeights, DecoupledWeightDecay
from optimlab.transforms.factored import ScaleByAdafactor
from optimlab.transforms.momentum import EMAMomentum, Momentum
from optimlab.transforms.orthogonal import Orthogonalize, ScaleByAdjustedLearningRate
from optimlab.transforms.scale import Negate, ScaleByLearningRate
from optimlab.transforms.sign import ScaleByRprop

__all__ = [
    "AddDecayedWeights",
    "DecoupledWeightDecay",
    "EMAMomentum",
    "IterateAveraging",
    "Momentum",
    "Negate",
    "Orthogonalize",
    "ScaleByAdadelta",
    "ScaleByAdafactor",
    "ScaleByAdagrad",
    "ScaleByAdam",
    "ScaleByAdamax",
    "ScaleByAdjustedLearningRate",
    "ScaleByDecayingStepSize",
    "ScaleByLearningRate",
    "ScaleByNAdam",
    "ScaleByRAdam",
    "ScaleByRMS",
    "ScaleByRprop",
    "ScaleBySparseAdam",
]
