"""The suite's workloads: a lab problem, its validation target and a step budget.

AlgoPerf's notion of a workload: reach a validation target within a step budget. The targets are
the lab problems' own (:mod:`optimlab.lab.problems.problem`, where every optimizer's measured steps to
them are written down), so a run of the suite and a ``compare`` sweep of the same problem aim at
the same number. The budgets here are the suite's: long enough that tuned AdamW reaches the target
several times over (a slower optimizer still gets a time, not a miss), short enough that a trial
which misses it ends soon.

How each target was calibrated: AdamW at the problem's measured lr and at half a decade either
side, seed 0, run to the end of the suite's budget without stopping at the target; the best
validation metric any of the three reached (its lr, and its steps to the target):

  problem          target             tuned AdamW: best metric in the budget (lr, steps)   budget
  logreg-cancer    accuracy >= 0.98   0.991 (0.0316, 7 steps)                               200
  linreg-diabetes  R^2 >= 0.48        0.493 (0.0316, 17; least squares: 0.493)              300
  mlp-digits       accuracy >= 0.95   0.981 (0.0316, 160)                                   600
  quadratic        f <= 1e-6          1e-27 (0.316, 120; f(w0) = 1, cond 100)              2000
  softmax-mnist    accuracy >= 0.915  0.922 (0.00316, 250)                                  600
  mlp-mnist        accuracy >= 0.97   0.975 (0.001, 1100; 0.974 at 0.00316 in 800)         2000
  cnn-fashion      accuracy >= 0.87   0.896 (0.01, 300)                                     800
  rosenbrock       f <= 1e-3          9.4e-5 (0.0316, 910)                                 5000
  finetune-        accuracy >= 0.7    0.715 (0.001, 30; the top layer of MiniLM on 512         32
  sentiment:                          snippets, lower layers frozen; 0.0003: 0.688, 0.003:
  top_layers=1                        0.660, 0.01: 0.559; see SUITE_FINETUNE)

Each target is that best minus a margin (0.5 to 3 points of accuracy, 0.013 of R^2; the losses
a decade or more above what AdamW reaches), so that it asks for a well-trained model and still
leaves room for seed-to-seed spread; each budget is at least 2.5x (mostly 4x or more) the steps
tuned AdamW needs, so slower optimizers get a time rather than a miss. The MiniLM fine-tune is
the exception, kept as the lab defines it (one epoch, AdamW reaching the target at its last
evaluation but one): a hard workload, on which a miss is the common result. The cnn-fashion
calibration ran 1,500 steps; the suite gives it 800 (2.7x AdamW's 300), its steps being the
suite's costliest after the fine-tune's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from optimlab.lab import Problem, get_problem

#: The MiniLM fine-tune as the suite runs it: the top layer trained on the cached states of the frozen
#: five below it, one epoch of 512 snippets (32 steps), about 5 s a run where the whole model's
#: default problem costs about 200 s (docs/finetune.md).
SUITE_FINETUNE = "finetune-sentiment:batch=16,max_length=32,target=0.7,test=128,top_layers=1,train=512,valid=256"

#: A step's cost for a problem the suite has not measured (it only orders the work of several jobs).
DEFAULT_STEP_SECONDS = 1e-3


@dataclass(frozen=True)
class Workload:
    """A lab problem (by spec) with the suite's step budget for it; ``step_seconds``: about what one
    of its steps costs, in CPU seconds on one core (measured with AdamW, evaluations included), which
    only orders the work of several jobs (the costliest workloads first)."""

    problem: str
    budget: int
    step_seconds: float = field(default=DEFAULT_STEP_SECONDS, compare=False)

    @property
    def lab_problem(self) -> Problem:
        return get_problem(self.problem)

    @property
    def target_text(self) -> str:
        p = self.lab_problem
        return f"{p.metric} {'>=' if p.higher_is_better else '<='} {p.target:g}"


#: ``--quick``: cheap workloads (seconds per run on one core), five kinds of model.
QUICK = (
    Workload("logreg-cancer", 200, 2e-4),
    Workload("linreg-diabetes", 300, 2e-4),
    Workload("mlp-digits", 600, 5e-4),
    Workload("quadratic", 2000, 3e-4),
    Workload("softmax-mnist", 600, 1e-3),
)

#: The full suite: the quick workloads, the larger image models, the 2-D valley and the MiniLM
#: sentiment fine-tune (it needs the ``finetune`` extra: transformers and the model's package).
FULL = QUICK + (
    Workload("mlp-mnist", 2000, 1.4e-3),
    Workload("cnn-fashion", 800, 0.011),
    Workload("rosenbrock", 5000, 4.5e-4),
    Workload(SUITE_FINETUNE, 32, 0.17),
)

WORKLOADS = {w.problem: w for w in FULL}


def workload(spec: str, budget: int | None = None) -> Workload:
    """The suite's workload for the problem ``spec`` (any lab problem; budget: the suite's if it
    has one, else the problem's own)."""
    problem = get_problem(spec)  # unknown names: an error that lists the valid ones
    known = WORKLOADS.get(problem.name)
    if budget is None:
        budget = known.budget if known else problem.max_steps
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"workload: budget must be an int >= 1, got {budget!r}")
    return Workload(problem.name, budget, known.step_seconds if known else DEFAULT_STEP_SECONDS)
