"""The engine: the one loop that runs a transform over parameter groups.

Every optimizer's step comes here as a list of :class:`GroupStep` (what to run, on which
tensors, with which hyperparameters). The engine first checks all of it, then changes
anything: a step that raises leaves parameters and state as they were.

Execution paths (all run the same :meth:`Transform.update`; see docs/performance.md):

* ``eager`` runs the transform tensor by tensor with hyperparameters as Python numbers. It is
  the reference that the other paths are tested against.
* ``fused`` traces the transform once into an elementwise program and runs it as one
  generated C kernel per group (:mod:`optimlab.engine.trace`, :mod:`optimlab.engine.cpu`,
  :mod:`optimlab.engine.fused`): CPU parameters of float32, float64, bfloat16 or float16.
* ``triton`` runs the traced program as one generated Triton kernel per group
  (:mod:`optimlab.engine.triton`), for CUDA parameters where Triton is installed; chosen by
  ``auto`` only with ``OPTIMLAB_TRITON_AUTO=1`` until it has run on a GPU.
* ``compiled`` runs the transform under ``torch.compile`` (:mod:`optimlab.engine.compiled`),
  hyperparameters as 0-d tensors: the path for CUDA parameters.
* ``auto`` (the default) picks ``fused`` on CPU and ``compiled`` on CUDA, and keeps ``eager``
  for each parameter where neither applies (complex parameters, sparse or non-dense
  tensors, a transform the tracer cannot express, no C compiler), and for every group with
  ``differentiable=True`` (autograd records the eager path's torch operations). A path that
  fails to build falls back to eager with one warning; training never stops because of it.

Choose with :func:`set_path`, :func:`using`, or the environment variable ``OPTIMLAB_ENGINE``.

The package, one concern a module, data flowing one way (each imports only those above it):

* :mod:`~optimlab.engine.paths` (the path setting, counters), :mod:`~optimlab.engine.state`
  (the state table that counts its changes), :mod:`~optimlab.engine.hyper` (hyperparameters
  as a structure and runtime numbers), :mod:`~optimlab.engine.ops` (the operation table);
* :mod:`~optimlab.engine.work` (a group's share of a step), :mod:`~optimlab.engine.validate`,
  :mod:`~optimlab.engine.eager`;
* :mod:`~optimlab.engine.trace` (a transform recorded as an elementwise program),
  :mod:`~optimlab.engine.codegen_c` and :mod:`~optimlab.engine.cpu` (its C kernel),
  :mod:`~optimlab.engine.native` (the steady-step check helper), :mod:`~optimlab.engine.fused`;
* :mod:`~optimlab.engine.compiled`, :mod:`~optimlab.engine.triton`;
* :mod:`~optimlab.engine.dispatch`: the step itself.
"""

from optimlab.engine.dispatch import plan, run
from optimlab.engine.eager import initial_state, initialize, run_eager, step_dtype
from optimlab.engine.paths import (
           PATHS,
           get_path,
           path_counts,
           set_path,
           using,
           warn_once,
)
from optimlab.engine.validate import check, check_state
from optimlab.engine.work import GroupStep, LazyNames, collect, collect_plain, subset

__all__ = ["PATHS", "GroupStep", "LazyNames", "check", "check_state", "collect", "collect_plain", "get_path", "initial_state",
           "initialize", "path_counts", "plan", "run", "run_eager", "set_path", "step_dtype", "subset", "using",
           "warn_once"]
