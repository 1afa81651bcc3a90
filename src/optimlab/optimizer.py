"""The facade: a :class:`torch.optim.Optimizer` whose math is a transform and whose loop is the engine.

From torch.optim it keeps everything users and libraries rely on: ``param_groups``,
``add_param_group``, ``state``, ``zero_grad``, step pre/post hooks, ``state_dict`` in torch's
format. It adds:

* hyperparameter checks on construction, on ``add_param_group``, on every step (a value a user
  or scheduler wrote into ``param_groups``) and on ``load_state_dict``;
* ``load_state_dict`` that matches state to parameters *by name* when both sides were built
  from ``model.named_parameters()``, so a reordered or extended model gets the right state;
* steps that either happen whole or not at all (everything is checked before anything changes);
* schedules wherever a number goes (``lr=cosine(0.1, 1000)``, ``betas=(cosine(...), 0.999)``):
  kept beside the groups in :attr:`Optimizer.schedules`, their values written into the groups
  before each step (see :mod:`optimlab.schedules.direct`).
"""

from __future__ import annotations

import collections
import functools
import operator
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from optimlab import checks, engine, finite, flags
from optimlab.checks import Check
from optimlab.core import Transform, keeps_state, scalar_dtype, state_spec
from optimlab.engine.state import StateDict, StateTable, adopt
from optimlab.schedules.direct import DirectSchedules


class Optimizer(torch.optim.Optimizer):
    """Base of optimlab's optimizers: subclasses say which transform a group runs.

    Subclasses set :attr:`checks` (group key -> check) and :attr:`counts_steps`, and implement
    :meth:`build_transform` and :meth:`structure` (what in a group changes the *shape* of the
    math, such as ``nesterov``; a group's transform is built once per structure).
    """

    checks: ClassVar[Mapping[str, Check]] = {}
    #: Keep torch.optim's ``state['step']`` per parameter (the torch twin has one).
    counts_steps: ClassVar[bool] = False
    #: Make every parameter's state when its group is added, as the torch twin does (Adagrad),
    #: so a checkpoint taken before the first step has the state torch expects.
    state_at_construction: ClassVar[bool] = False
    #: ``state['step']`` is a 0-d tensor, as in every torch twin but SparseAdam (a Python int):
    #: a number loaded from an older checkpoint becomes one, as torch's optimizers convert it.
    tensor_steps: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Every optimizer takes the keyword-only check_finite=False (optimlab.finite).
        if "__init__" in cls.__dict__:
            cls.__init__ = finite.with_option(cls.__dict__["__init__"])  # type: ignore[method-assign]

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        defaults = {**defaults, finite.OPTION: self.__dict__.pop("_check_finite", defaults.get(finite.OPTION, False))}
        #: Schedules given in place of numbers, and this optimizer's step count ``schedules.t``.
        self.schedules = DirectSchedules()
        self.schedules.check(self.checks, self.owner, defaults)
        self.check_group(self.schedules.resolved(defaults))
        self._transforms: dict[tuple, Transform] = {}
        #: Per group index: (the group, its items when last checked) while they are immutable.
        self._checked: list[tuple[dict, list, list] | None] = []
        #: The (empty) state dicts that the engine steps with for transforms that keep no state
        #: (plain SGD): outside :attr:`state`, which then stays empty, as torch.optim's does.
        self._stateless_states = StateTable()
        #: Per group index: (id, length) of its parameter list when its flags last passed.
        self._flags_checked: dict[int, tuple[int, int]] = {}
        super().__init__(params, defaults)
        self.state = adopt(self.state)
        flags.check_construction(self.owner, defaults)

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "schedules": self.schedules}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # torch pickles only defaults, state and param_groups; the transform cache is rebuilt.
        super().__setstate__(state)
        self.__dict__.setdefault("_transforms", {})
        self.__dict__.setdefault("_checked", [])
        self.__dict__.setdefault("_stateless_states", StateTable())
        self.__dict__.setdefault("_flags_checked", {})
        self.__dict__.setdefault("schedules", DirectSchedules())
        # torch's load_state_dict comes here with a new defaultdict of new dicts: kept as a
        # StateTable, which lets steps tell that nothing changed (optimlab.engine.state).
        if type(self.state) is not StateTable:
            self.state = adopt(self.state)
        if self.counts_steps and self.tensor_steps:
            self.steps_as_tensors()

    def steps_as_tensors(self) -> None:
        """A ``state['step']`` that is a number (older torch wrote Python floats and ints into
        checkpoints) made the 0-d tensor torch's optimizers convert it to when they load it."""
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p)
                step = state.get("step") if state else None
                if step is not None and not isinstance(step, torch.Tensor):
                    state["step"] = torch.tensor(float(step), dtype=scalar_dtype())

    def _patch_step_function(self) -> None:
        # As torch.optim does it (wrap this class's step once), with optimlab's wrapper.
        step = type(self).step
        if not getattr(step, "hooked", None):
            type(self).step = profile_hook_step(step)  # type: ignore[method-assign]
        super()._patch_step_function()  # sees the step hooked; sets what else torch sets

    # -- what a subclass provides ----------------------------------------------------------
    def build_transform(self, group: Mapping[str, Any]) -> Transform:
        raise NotImplementedError

    def structure(self, group: Mapping[str, Any]) -> tuple:
        return ()

    def check_param(self, param: torch.Tensor, name: str) -> None:
        """Raise TypeError/ValueError for a parameter this optimizer cannot step (Muon: fewer than
        two dimensions); called for each parameter of a group being added. Default: any is fine."""

    def check_loaded_state(self, group: Mapping[str, Any], param: torch.Tensor, name: str,
                           state: Mapping[str, Any]) -> None:
        """Raise if ``state``, loaded for ``param`` of ``group``, is not what this optimizer keeps.

        Default: the state its transform declares (:func:`optimlab.engine.check_state`). An
        optimizer that runs whole steps of its own (L-BFGS) checks its own layout here.
        """
        engine.check_state(f"{self.owner}.load_state_dict", name, self.transform_for(group), param, state,
                           self.counts_steps, complete=True)

    def check_group(self, group: Mapping[str, Any]) -> None:
        """Check the group's hyperparameters; subclasses add checks that span several."""
        owner = self.owner
        for key, check in self.checks.items():
            if key in group:
                check(owner, key, group[key])
        if finite.OPTION in group:
            checks.flag(owner, finite.OPTION, group[finite.OPTION])

    def check_group_cached(self, index: int, group: dict[str, Any]) -> None:
        """:meth:`check_group`, skipped when the group holds the very same immutable values as
        when it last passed (the usual step: nothing was written into it since).

        A value written since (a scheduler, a user) is a different object, so the group is
        checked again and a bad value raises the same error as without this shortcut. Groups
        holding a tensor, a list or any other object that can change in place are checked on
        every step.
        """
        checked = self._checked
        if index < len(checked):
            entry = checked[index]
            if (entry is not None and entry[0] is group and list(group) == entry[1]
                    and all(map(operator.is_, group.values(), entry[2]))):
                return
        self.check_group(group)
        while len(checked) <= index:
            checked.append(None)
        checked[index] = (group, list(group), list(group.values())) if immutable_values(group) else None

    # -- the facade ------------------------------------------------------------------------
    @property
    def owner(self) -> str:
        return f"optimlab.{type(self).__name__}"

    def transform_for(self, group: Mapping[str, Any]) -> Transform:
        key = self.structure(group)
        transform = self._transforms.get(key)
        if transform is None:
            transform = self._transforms[key] = self.build_transform(group)
        return transform

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if not isinstance(param_group, Mapping) or "params" not in param_group:
            got = f"keys {sorted(map(str, param_group))}" if isinstance(param_group, Mapping) else type(param_group).__name__
            raise TypeError(f"{self.owner}.add_param_group: expected a dict with 'params' (the parameters) and any "
                            f"hyperparameters to override, got {got}")
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            self.schedules.check(self.checks, self.owner, group)
            self.schedules.take(group)  # schedules out of the group, their values in
            self.check_group(group)
            drop_repeats(group)
            for i, p in enumerate(group["params"]):
                if not (p.is_floating_point() or p.is_complex()):
                    raise TypeError(f"{self.owner}: parameter {param_name(group, len(self.param_groups) - 1, i)} "
                                    f"is {p.dtype}; optimizers need floating-point or complex parameters")
                self.check_param(p, param_name(group, len(self.param_groups) - 1, i))
        except (TypeError, ValueError):
            self.param_groups.pop()  # leave the optimizer as it was
            self.schedules.truncate(len(self.param_groups))
            raise
        if self.state_at_construction:
            transform = self.transform_for(group)
            for p in group["params"]:
                if not self.state[p]:
                    self.state[p].update(engine.initial_state(transform, p, self.counts_steps))

    def step(self, closure: Any = None) -> Any:
        """One optimization step over every parameter that has a gradient.

        ``closure`` (optional) re-evaluates the model and returns the loss; it runs with
        gradients enabled before the step. Parameters whose ``.grad`` is None are skipped.
        The step runs without autograd, or with it for ``differentiable=True`` (as torch.optim
        decides, from the constructor's value): then the new parameters and state are functions
        of the old ones, of the gradients and of tensor hyperparameters.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.check_finite(loss)
        with torch.set_grad_enabled(bool(self.defaults.get("differentiable"))):
            self.step_groups()
        return loss

    def check_finite(self, loss: Any = None) -> None:
        """Raise FloatingPointError, having changed nothing, if a group with ``check_finite=True``
        has a NaN or infinite gradient or ``loss`` is one (:mod:`optimlab.finite`)."""
        if finite.wanted(self.param_groups):
            with torch.no_grad():
                finite.check(self.owner, self.param_groups, loss)

    def step_groups(self) -> None:
        """The step itself: every group checked and collected, then run by the engine.

        While torch.compile records the step, values are not read back to check them: they were
        checked where they entered (constructor, add_param_group, load_state_dict) and by every
        step run outside the compiled function. Schedules given in place of numbers need the
        step count in Python: they work under torch.compile but recompile each step; a tensor
        lr driven by a Scheduler (in place) does not.
        """
        compiling = torch.compiler.is_compiling()
        counted = compiling and not self.schedules
        if not counted:
            self.schedules.apply(self.param_groups, self.owner)  # group[name] = schedule(t)
        gather = engine.collect_plain if compiling else engine.collect
        works = []
        for index, group in enumerate(self.param_groups):
            name_of = functools.partial(param_name, group, index)
            if not compiling:
                self.check_group_cached(index, group)
                if group.get("capturable") or group.get("fused"):
                    self.check_flags(index, group, name_of)
            transform = self.transform_for(group)
            # A transform that keeps no state (plain SGD) steps with dicts outside ``state``,
            # which stays empty, as torch.optim's does.
            states = self.state if self.counts_steps or keeps_state(transform) else self._stateless_states
            work = gather(transform, group, states, self.counts_steps, self.owner, name_of)
            if work.params:
                works.append(work)
        engine.run(works)
        if counted:
            self.schedules.count_compiled_step()
        else:
            self.schedules.advance(self.param_groups)  # t += 1; the next step's values in

    def check_flags(self, index: int, group: dict[str, Any], name_of: Any) -> None:
        """torch's checks of ``fused`` and ``capturable`` at a step (:func:`flags.check_step`).
        Those of ``fused`` are about the parameters' devices and dtypes: once they passed, made
        again only when the group's parameter list changes (``capturable`` never passes)."""
        params = group["params"]
        if group.get("capturable") or self._flags_checked.get(index) != (id(params), len(params)):
            flags.check_step(self.owner, group, name_of)
            self._flags_checked[index] = (id(params), len(params))

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """torch's state dict, plus ``"schedules"`` (step count, stateful schedules) if any."""
        state_dict = super().state_dict()
        # Plain dicts in checkpoints (the tensors are the optimizer's own, as in torch.optim).
        state_dict["state"] = {key: dict(value) if type(value) is StateDict else value
                               for key, value in state_dict["state"].items()}
        if self.schedules:
            state_dict["schedules"] = self.schedules.state_dict()
        return state_dict

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load a state dict from :meth:`state_dict` of optimlab *or* of the torch.optim twin.

        When every group here and in ``state_dict`` has ``param_names`` (the optimizer was
        built from ``model.named_parameters()``), state is matched by name: parameters are
        found wherever they now sit, and parameters new to the model start fresh. Otherwise
        parameters are matched by position, as in torch. Either way the state dict is fully
        checked (groups, hyperparameters, state shapes) before anything is loaded.

        torch.optim casts every loaded state tensor except ``step`` to its parameter's dtype;
        state that the math keeps in a dtype of its own (ASGD's ``eta``, NAdam's
        ``mu_product``) gets its declared dtype back (:meth:`restore_declared_dtypes`).

        Hooks registered with ``register_load_state_dict_pre_hook`` run first, as in torch,
        on a shallow copy of ``state_dict``: what they return (or change in place) is what is
        checked and loaded. Post-hooks run after loading.
        """
        state_dict = dict(state_dict) if isinstance(state_dict, Mapping) else state_dict
        pre_hooks = self._optimizer_load_state_dict_pre_hooks
        for hook in pre_hooks.values():
            result = hook(self, state_dict)
            if result is not None:
                state_dict = result
        checked = self.checked_state_dict(state_dict)
        schedules = self.schedules.checked_state_dict(state_dict.get("schedules"), self.owner)
        # torch's load_state_dict would run the pre-hooks again, on the checked dict.
        self._optimizer_load_state_dict_pre_hooks = collections.OrderedDict()
        try:
            super().load_state_dict(checked)
        finally:
            self._optimizer_load_state_dict_pre_hooks = pre_hooks
        self.restore_declared_dtypes()
        self.schedules.load(schedules, self.param_groups)

    def restore_declared_dtypes(self) -> None:
        """Give loaded state the dtypes its transform declares.

        torch.optim's ``load_state_dict`` casts every state tensor but ``step`` to its
        parameter's dtype. State declared in another dtype (ASGD's 0-d ``eta`` and ``mu``, float32
        beside float64 parameters, as torch makes them) gets that dtype back, so that a run
        resumed from a checkpoint goes on exactly as the uninterrupted one (torch.optim.ASGD's
        own does not: its step sizes stop being rounded to float32).
        """
        for group in self.param_groups:
            transform = self.transform_for(group)
            for p in group["params"]:
                state = self.state.get(p)
                if not state:
                    continue
                for key, (_, dtype) in state_spec(transform, p).items():
                    value = state.get(key)
                    if isinstance(value, torch.Tensor) and value.dtype != dtype:
                        state[key] = value.to(dtype)

    def checked_state_dict(self, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        """``state_dict`` checked against this optimizer and laid out by this one's positions."""
        owner = self.owner
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
            raise TypeError(f"{owner}.load_state_dict: expected a dict with 'state' and 'param_groups' "
                            f"(from Optimizer.state_dict()), got {type(state_dict).__name__}")
        saved_groups = state_dict["param_groups"]
        saved_state = state_dict["state"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{owner}.load_state_dict: the state dict has {len(saved_groups)} parameter "
                             f"group(s), this optimizer has {len(self.param_groups)}")
        groups = []
        for index, saved in enumerate(saved_groups):
            group = {k: v for k, v in saved.items() if k not in ("params", "param_names")}
            for key, value in self.schedules.resolved(self.defaults).items():
                group.setdefault(key, value)  # options newer than the checkpoint
            # Every numeric hyperparameter of this optimizer is required: torch.optim's groups have
            # always had them, and another kind of optimizer lacks some (Adam's has no 'momentum').
            # Flags newer than a checkpoint (maximize, foreach, ...) were filled in just above.
            needed = [k for k, v in self.defaults.items()
                      if not isinstance(v, bool) and v is not None and k not in saved]
            if needed:
                raise ValueError(f"{owner}.load_state_dict: parameter group {index} of the state dict has no "
                                 f"{needed[0]!r}: it was saved by a different kind of optimizer")
            self.check_group(group)
            groups.append(group)

        by_name = all("param_names" in g for g in saved_groups) and all("param_names" in g for g in self.param_groups)
        if by_name:
            saved_by_name = {name: saved_state.get(pid)
                             for g in saved_groups for pid, name in zip(g["params"], g["param_names"])}
            wanted = [name for g in self.param_groups for name in g["param_names"]]
            found = [saved_by_name.get(name) for name in wanted]
        else:
            for index, (saved, current) in enumerate(zip(saved_groups, self.param_groups)):
                if len(saved["params"]) != len(current["params"]):
                    raise ValueError(f"{owner}.load_state_dict: parameter group {index} has "
                                     f"{len(saved['params'])} parameters in the state dict and "
                                     f"{len(current['params'])} here (to match by name, build both "
                                     "optimizers from model.named_parameters())")
            found = [saved_state.get(pid) for g in saved_groups for pid in g["params"]]

        state, position = {}, 0
        for index, (group, current) in enumerate(zip(groups, self.param_groups)):
            group["params"] = list(range(position, position + len(current["params"])))
            # The names here, else the checkpoint's (torch keeps a checkpoint's names).
            names = current.get("param_names", saved_groups[index].get("param_names"))
            if names is not None:
                group["param_names"] = list(names)
            for i, p in enumerate(current["params"]):
                entry = found[position + i]
                if entry is not None:
                    if not isinstance(entry, Mapping):
                        raise TypeError(f"{owner}.load_state_dict: state for parameter {param_name(current, index, i)} "
                                        f"must be a dict, got {type(entry).__name__}")
                    self.check_loaded_state(group, p, param_name(current, index, i), entry)
                    state[position + i] = entry
            position += len(current["params"])
        return {"state": state, "param_groups": groups}


_record_enter = getattr(torch._C._autograd, "_record_function_with_args_enter", None)
_record_exit = getattr(torch._C._autograd, "_record_function_with_args_exit", None)
_cupti_monitor = getattr(torch.autograd.profiler, "_maybe_cupti_monitor", None)


def profile_hook_step(func: Any) -> Any:
    """torch.optim's step wrapper (``Optimizer.profile_hook_step``), cheaper when no hook is set.

    torch's wrapper opens a profiler range named ``Optimizer.step#<class>.step`` through the
    operator dispatcher and runs the global and per-optimizer step hooks around ``func``. With
    no hooks registered (and torch's CUPTI monitor idle), this one opens the same range (the
    same RecordFunction, which every profiler, including on-demand ones, sees) through its
    direct binding and calls ``func`` and ``_optimizer_step_code`` (the profiler's Python-tracer
    anchor) as torch's does; that saves ~0.1 ms per step once a step has streamed megabytes
    through the caches. With any hook, or where the bindings it relies on are missing,
    torch's own wrapper runs.
    """
    torch_wrapper = torch.optim.Optimizer.profile_hook_step(func)
    if _record_enter is None or _record_exit is None or _cupti_monitor is None:
        return torch_wrapper

    from torch.optim.optimizer import (
        _global_optimizer_post_hooks,
        _global_optimizer_pre_hooks,
    )

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        self = args[0]
        if (torch.compiler.is_compiling() or self._optimizer_step_pre_hooks or self._optimizer_step_post_hooks or _global_optimizer_pre_hooks
                or _global_optimizer_post_hooks or cupti_monitor_active()):
            return torch_wrapper(*args, **kwargs)
        handle = _record_enter(f"Optimizer.step#{self.__class__.__name__}.step")
        try:
            out = func(*args, **kwargs)
            self._optimizer_step_code()
            return out
        finally:
            _record_exit(handle)

    wrapper.hooked = True  # type: ignore[attr-defined]
    return wrapper


def cupti_monitor_active() -> bool:
    """Whether torch's CUPTI monitor (which record_function also annotates) may be collecting:
    its singleton is set, or this torch's monitor module is not the one known here."""
    monitor = _cupti_monitor()
    return monitor is not None and getattr(monitor, "_monitor_singleton", True) is not None


def drop_repeats(group: dict[str, Any]) -> None:
    """Keep each parameter of ``group`` once (and its name, if the group has ``param_names``).

    torch.optim warns about a parameter listed twice in a group (the warning has been given by
    the time this runs) and then steps it twice, differently on each of its code paths; here
    the group steps it once, on every path.
    """
    seen: set[int] = set()
    keep = [i for i, p in enumerate(group["params"]) if not (id(p) in seen or seen.add(id(p)))]
    if len(keep) < len(group["params"]):
        for key in ("params", "param_names"):
            if key in group:
                group[key] = [group[key][i] for i in keep]


_IMMUTABLE = (float, int, bool, str, type(None))


def immutable_values(group: Mapping[str, Any]) -> bool:
    """Whether every hyperparameter in ``group`` is a number, flag, string, None, or a tuple of
    those: values that cannot change without a new object being written into the group."""
    for key, value in group.items():
        if key in ("params", "param_names"):
            continue
        if type(value) is tuple:
            if not all(type(item) in _IMMUTABLE for item in value):
                return False
        elif type(value) not in _IMMUTABLE:
            return False
    return True


def param_name(group: Mapping[str, Any], group_index: int, index: int) -> str:
    names = group.get("param_names")
    return repr(names[index]) if names else f"#{index} of group {group_index}"

