"""Record one parameter's update as an elementwise program, by running the transform itself.

The fast paths never restate an optimizer's math: they run :meth:`Transform.update` once on
"meta" tensors (shapes and dtypes, no data) under a dispatch mode that writes down every ATen
operation it performs. The result is a :class:`Program`: a straight-line list of elementwise
operations over

* *vector* values, one per element of the parameter (the parameter, its gradient, its state
  tensors and everything computed from them), and
* *scalar* values, one per tensor (hyperparameters, the step count, 0-d state such as NAdam's
  ``mu_product``, and what the math derives from them, such as ``1 - beta2 ** step``),

plus the state tensors (and the parameter) it writes: parameter-shaped ones element by element,
0-d ones ("per-tensor state") once per tensor. A code generator turns the program into
a kernel; the kernel is then exactly the transform's math, operation by operation.

Anything the recorder does not understand (a view, a reduction, a data-dependent branch, an
operation outside :data:`optimlab.engine.ops.ATEN`) raises :class:`Unsupported`, and the engine keeps the eager path
for that transform.

Hyperparameters are recorded as float64 scalars (the eager path computes with Python floats),
except exact zeros, which the transform sees as plain ``0`` so that ``is_zero`` branches are
decided at trace time (see :func:`optimlab.core.is_zero`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from optimlab.core import Transform
from optimlab.engine.errors import EagerByDesign, NeedsEagerStep, Unsupported
from optimlab.engine.hyper import hp_rebuild, hp_structure
from optimlab.engine.ops import ATEN

#: Length of the vectors the transform is traced with: any length works for elementwise math;
#: an odd one makes an accidental match with some other dimension unlikely.
TRACE_LENGTH = 7

FLOAT_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
HALF_DTYPES = (torch.bfloat16, torch.float16)

#: What a program does with the update ``u`` it computes (its *form*):
#: ``STEP``: ``param += u`` and the step counts advance in the kernel (a whole elementwise chain);
#: ``DIRECTION``: ``u`` is written to the state entry :data:`DIRECTION_KEY`, for the next part of a
#: chain that mixes kinds (:mod:`optimlab.engine.segments`), and the counts are only read;
#: ``FINAL``: ``param += u``, the counts only read (the last part of such a chain).
STEP, DIRECTION, FINAL = "step", "direction", "final"
#: The state entry a ``DIRECTION`` program writes: a buffer the engine owns, never a user's state.
DIRECTION_KEY = "(direction)"

#: Operations whose result dtype is the one asked for, not a promotion of their operands'
#: (``where`` included: on the eager path a branch on numbers is a Python ``if``, and its
#: result is written into state of a known dtype).
DTYPE_GIVEN = ("copy", "fill", "where")
STEP_DTYPES = (torch.float32, torch.float64)


@dataclass
class Node:
    """One value of the program.

    ``op`` is ``"input"`` (``key`` says which), ``"const"`` (``value``), or an operation of
    :data:`OPS` applied to ``args`` (indices of earlier nodes). ``dtype`` is None for plain
    Python numbers, which take the dtype of the operation they are used in (as in torch).
    """

    op: str
    args: tuple[int, ...] = ()
    dtype: torch.dtype | None = None
    vector: bool = False
    key: tuple = ()
    value: float | bool | None = None


@dataclass
class Program:
    """A traced update: nodes in execution order, the inputs they read, the tensors they write."""

    nodes: list[Node]
    #: input key -> node index. Keys: ("param",), ("grad",), ("state", name) for a state tensor
    #: shaped like the parameter, ("tensor_state", name) for 0-d per-tensor state, ("step",) for
    #: the step number as a Python float, ("hp", i) for the i-th runtime hyperparameter.
    inputs: dict[tuple, int]
    #: (input key, node index): the tensor named by key receives the node's value.
    writes: list[tuple[tuple, int]]
    #: Names of the float64 runtime hyperparameters, in ``("hp", i)`` order, e.g. "betas[0]".
    hp_names: list[str]
    state_dtypes: dict[str, torch.dtype] = field(default_factory=dict)

    def describe(self) -> str:
        lines = []
        for i, n in enumerate(self.nodes):
            what = n.key if n.op == "input" else (n.value if n.op == "const" else n.args)
            lines.append(f"%{i} = {n.op} {what} : {'vector' if n.vector else 'scalar'} {n.dtype}")
        lines += [f"write {key} <- %{i}" for key, i in self.writes]
        return "\n".join(lines)


# -- the recorder ----------------------------------------------------------------------------
def _schema_args(func: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Arguments of an ATen call by schema name, defaults filled in."""
    bound: dict[str, Any] = {}
    for i, arg in enumerate(func._schema.arguments):
        if i < len(args):
            bound[arg.name] = args[i]
        elif arg.name in kwargs:
            bound[arg.name] = kwargs[arg.name]
        elif arg.has_default_value():
            bound[arg.name] = arg.default_value
        else:
            bound[arg.name] = None
    return bound


class Recorder(TorchDispatchMode):
    """Runs ATen calls on meta tensors and appends each one to the program being built."""

    def __init__(self) -> None:
        super().__init__()
        self.nodes: list[Node] = []
        self.current: dict[int, int] = {}   # id(tensor) -> node holding its current value
        self.keep: list[Tensor] = []        # keeps traced tensors alive so ids stay unique
        self.aliased: set[int] = set()      # ids of tensors that share memory with another
        self.inputs: dict[tuple, int] = {}  # input key -> its node
        self.numbers: set[int] = set()      # nodes that are Python numbers on the eager path

    # values --------------------------------------------------------------------------------
    def eager_dtype(self, out: Tensor, args: tuple[int, ...]) -> torch.dtype:
        """The dtype the eager path computes an operation in.

        Hyperparameters and the step count are Python numbers there, traced as float64 0-d
        tensors here; so are the values computed from them alone. Numbers never widen a tensor
        (a float32 0-d ``mu_product.mul_(mu)`` with a float ``mu`` multiplies in float32), where a
        float64 0-d tensor would. Values with elements decide their own dtype, as recorded.
        """
        if out.dim() != 0:
            if out.dtype in HALF_DTYPES and any(not self.nodes[i].vector and i not in self.numbers
                                                and self.nodes[i].dtype not in (None, out.dtype, torch.bool)
                                                for i in args):
                # torch first rounds such a 0-d tensor (ASGD's float64 eta) to the half type;
                # the kernel computes with it in float.
                raise EagerByDesign(f"a {out.dtype} operation reads 0-d state of another dtype")
            return out.dtype
        tensors = [self.nodes[i].dtype for i in args if i not in self.numbers
                   and self.nodes[i].dtype is not None and self.nodes[i].dtype.is_floating_point]
        if not tensors:
            return out.dtype
        dtype = tensors[0]
        for other in tensors[1:]:
            dtype = torch.promote_types(dtype, other)
        return dtype

    def add(self, node: Node) -> int:
        self.nodes.append(node)
        return len(self.nodes) - 1

    def input(self, key: tuple, dtype: torch.dtype, vector: bool) -> Tensor:
        """A meta tensor standing for an input of the program: a vector (one value per element
        of the parameter) or a per-tensor scalar."""
        t = torch.empty(TRACE_LENGTH if vector else (), dtype=dtype, device="meta")
        self.inputs[key] = self.add(Node("input", dtype=dtype, vector=vector, key=key))
        if key[0] in ("hp", "step"):
            self.numbers.add(self.inputs[key])
        self.bind(t, self.inputs[key])
        return t

    def bind(self, tensor: Tensor, index: int) -> None:
        self.current[id(tensor)] = index
        self.keep.append(tensor)

    def value_of(self, x: Any) -> int:
        """Node index for an argument: a traced tensor, a constant tensor or a number."""
        if isinstance(x, Tensor):
            index = self.current.get(id(x))
            if index is not None:
                return index
            if x.device.type != "meta" and x.dim() == 0 and not x.is_complex():
                # a constant the math made (select's torch.as_tensor(5.0)): a number on the eager path
                index = self.add(Node("const", dtype=x.dtype, value=x.item()))
                self.numbers.add(index)
                return index
            raise Unsupported(f"the update reads a tensor of shape {tuple(x.shape)} that is neither "
                              "the parameter, its gradient, its state nor a scalar")
        if isinstance(x, bool):
            index = self.add(Node("const", value=x))
        elif isinstance(x, (int, float)):
            index = self.add(Node("const", value=float(x)))
        else:
            raise Unsupported(f"the update passes a {type(x).__name__} ({x!r}) to a tensor operation")
        self.numbers.add(index)
        return index

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name in ("lift_fresh", "lift_fresh_copy"):
            return func(*args, **kwargs)  # a constant made with torch.tensor(...): read where used
        if name in ("_local_scalar_dense", "is_nonzero", "item"):
            raise Unsupported("the update reads a tensor's value in Python (a branch such as "
                              "`if hp == 0`; write it with optimlab.core.is_zero)")
        if name in ("detach", "alias"):  # the same values; writing through either would be aliasing
            out = func(*args, **kwargs)
            source = args[0]
            self.aliased.update((id(source), id(out)))
            self.bind(out, self.value_of(source))
            return out
        in_place = name.endswith("_") and not name.startswith("_")
        rule = ATEN.get(name[:-1] if in_place else name)
        if rule is None:
            raise Unsupported(f"aten.{name} is not an elementwise operation the fused path knows")
        out = func(*args, **kwargs)
        if not isinstance(out, Tensor):
            raise Unsupported(f"aten.{name} does not return one tensor")
        bound = _schema_args(func, args, kwargs)
        for x in list(bound.values()) + [out]:
            if isinstance(x, Tensor) and x.dim() != 0 and tuple(x.shape) != (TRACE_LENGTH,):
                raise Unsupported(f"aten.{name} works on a tensor of shape {tuple(x.shape)}; only "
                                  "elementwise math on the parameter's elements is supported")
        if out.dtype not in FLOAT_DTYPES + (torch.bool,):
            raise Unsupported(f"aten.{name} gives {out.dtype}")
        op, operands = rule(bound)
        args = tuple(self.value_of(x) for x in operands)
        computed = out.dtype if op in DTYPE_GIVEN or out.dtype is torch.bool else self.eager_dtype(out, args)
        if computed != out.dtype and not in_place:
            raise Unsupported(f"aten.{name} on 0-d values gives {out.dtype} here and {computed} on the eager path")
        index = self.add(Node(op, args, computed, out.dim() != 0))
        written = bound["self"] if in_place else bound.get("out")
        if not isinstance(written, Tensor) and all(i in self.numbers for i in args):
            self.numbers.add(index)  # (a value written into a tensor is that tensor's, not a number)
        if computed != out.dtype:  # written back into ``self``: one rounding, as torch casts it
            index = self.add(Node("copy", (index,), out.dtype, out.dim() != 0))
        if isinstance(written, Tensor):
            if id(written) in self.aliased:
                raise Unsupported(f"aten.{name} writes to a tensor that has an alias (detach)")
            self.bind(written, index)
        self.bind(out, index)
        return out


# -- tracing a transform -----------------------------------------------------------------------
def trace(transform: Transform, hyperparams: Mapping[str, Any], param_dtype: torch.dtype,
          state: Mapping[str, Any], counts_steps: bool, per_tensor: frozenset[str] = frozenset(),
          form: str = STEP) -> Program:
    """Record ``param += transform.update(grad, param, state, hp, step)`` for one parameter (or,
    in the ``DIRECTION`` form, ``state[DIRECTION_KEY] = update(...)``).

    ``state`` is one parameter's current state (only keys and dtypes are used); the keys in
    ``per_tensor`` name its 0-d entries (one value per tensor, not per element). Raises
    :class:`Unsupported` when the math cannot be a kernel of this kind, and
    :class:`NeedsEagerStep` when the update would add state entries.
    """
    if param_dtype not in FLOAT_DTYPES:
        raise Unsupported(f"parameters of dtype {param_dtype}")
    structure, names, _ = hp_structure(hyperparams)
    rec = Recorder()
    param = rec.input(("param",), param_dtype, vector=True)
    grad = rec.input(("grad",), param_dtype, vector=True)
    traced_state, state_dtypes = traced_state_of(rec, state, per_tensor)
    if counts_steps and "step" not in state:
        raise Unsupported("the step count is missing from the state")
    step = rec.input(("step",), torch.float64, vector=False) if counts_steps else None
    hp = hp_rebuild(hyperparams, structure, lambda i: rec.input(("hp", i), torch.float64, vector=False))
    originals = dict(traced_state)
    try:
        with rec, torch.no_grad():
            u = transform.update(grad, param, traced_state, hp, step)
            if form == DIRECTION:
                traced_state[DIRECTION_KEY].copy_(u)
            else:
                param.add_(u)
    except Unsupported:
        raise
    except Exception as error:  # noqa: BLE001 - any failure while recording means "not supported"
        raise Unsupported(f"{type(error).__name__}: {error}") from error
    writes = written(rec, param, grad, originals, traced_state)
    return Program(rec.nodes, rec.inputs, writes, names, state_dtypes)


def traced_state_of(rec: Recorder, state: Mapping[str, Any],
                    per_tensor: frozenset[str]) -> tuple[dict[str, Any], dict[str, torch.dtype]]:
    """Inputs standing for a parameter's state: vectors for its tensors, scalars for its step
    count and its ``per_tensor`` (0-d) entries."""
    traced: dict[str, Any] = {}
    dtypes: dict[str, torch.dtype] = {}
    for key, value in state.items():
        if key == "step":
            if not (isinstance(value, Tensor) and value.dim() == 0 and value.dtype in STEP_DTYPES):
                raise Unsupported("state['step'] is not a 0-d float tensor")
            traced[key] = rec.input(("step_tensor",), value.dtype, vector=False)
        elif not isinstance(value, Tensor) or value.dtype not in FLOAT_DTYPES or value.is_sparse:
            raise Unsupported(f"state {key!r} is not a dense float tensor")
        elif key in per_tensor:
            traced[key] = rec.input(("tensor_state", key), value.dtype, vector=False)
        else:
            traced[key] = rec.input(("state", key), value.dtype, vector=True)
        dtypes[key] = value.dtype
    return traced, dtypes


def written(rec: Recorder, param: Tensor, grad: Tensor, originals: dict[str, Any],
            traced_state: dict[str, Any]) -> list[tuple[tuple, int]]:
    """What the recorded update writes: (input key, node) for the parameter and each state
    tensor it changed. Raises if it added, removed or replaced state, or wrote a read-only input."""
    added = sorted(set(traced_state) - set(originals))
    if added:
        raise NeedsEagerStep(f"the update adds state {added}")
    if set(originals) - set(traced_state):
        raise Unsupported("the update removes state entries")
    for key, tensor in originals.items():
        if traced_state[key] is not tensor:
            raise Unsupported(f"the update replaces state {key!r} with a new tensor")
    writes: list[tuple[tuple, int]] = []
    targets = [(("param",), param)] + [(("state", k), t) for k, t in originals.items()
                                       if k != "step" and ("state", k) in rec.inputs]
    targets += [(("tensor_state", k), t) for k, t in originals.items() if ("tensor_state", k) in rec.inputs]
    for key, tensor in targets:
        index = rec.current[id(tensor)]
        if index != rec.inputs[key]:
            if key[0] == "tensor_state" and rec.nodes[index].vector:
                raise Unsupported(f"the update writes per-element values into 0-d state {key[1]!r}")
            writes.append((key, index))
    read_only = [(("grad",), grad)] + ([(("step_tensor",), originals["step"])] if "step" in originals else [])
    for key, tensor in read_only:
        if rec.current[id(tensor)] != rec.inputs[key]:
            raise Unsupported(f"the update writes {key[0]}")
    return writes


class Roles:
    """Where each tensor of a parameter sits in the pointer array, and its dtype: the parameter,
    its gradient, its parameter-shaped state, its 0-d state (each sorted by key), its step count."""

    def __init__(self, program: Program, param_dtype: torch.dtype, counts_steps: bool, form: str = STEP) -> None:
        #: The kernel advances the step counts (else the engine already has, and it reads them).
        self.advances_steps = form == STEP
        self.state_keys = sorted(k for (kind, *rest) in program.inputs for k in rest if kind == "state")
        self.tensor_state_keys = sorted(k for (kind, *rest) in program.inputs for k in rest if kind == "tensor_state")
        self.names = (["param", "grad"] + [f"state:{k}" for k in self.state_keys]
                      + [f"tensor_state:{k}" for k in self.tensor_state_keys])
        self.dtypes = [param_dtype, param_dtype] + [program.state_dtypes[k]
                                                    for k in self.state_keys + self.tensor_state_keys]
        self.step_dtype = program.state_dtypes.get("step") if counts_steps else None
        if counts_steps:
            self.names.append("step")
            self.dtypes.append(self.step_dtype)

    def index(self, key: tuple) -> int:
        if key[0] == "state":
            return 2 + self.state_keys.index(key[1])
        if key[0] == "tensor_state":
            return 2 + len(self.state_keys) + self.tensor_state_keys.index(key[1])
        return {"param": 0, "grad": 1}[key[0]]
