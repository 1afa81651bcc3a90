"""Record one parameter's update as an elementwise program, by running the transform itself.

The fast paths never restate an optimizer's math: they run :meth:`Transform.update` once on
"meta" tensors (shapes and dtypes, no data) under a dispatch mode that writes down every ATen
operation it performs. The result is a :class:`Program`: a straight-line list of elementwise
operations over

* *vector* values, one per element of the parameter (the parameter, its gradient, its state
  tensors and everything computed from them), and
* *scalar* values, one per tensor (hyperparameters, the step count, and what the math derives
  from them, such as ``1 - beta2 ** step``),

plus the state tensors (and the parameter) it writes. A code generator turns the program into
a kernel; the kernel is then exactly the transform's math, operation by operation.

Anything the recorder does not understand (a view, a reduction, a data-dependent branch, an
operation outside :data:`OPS`) raises :class:`Unsupported`, and the engine keeps the eager path
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

#: Length of the vectors the transform is traced with: any length works for elementwise math;
#: an odd one makes an accidental match with some other dimension unlikely.
TRACE_LENGTH = 7

FLOAT_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
#: The program's comparisons, as C and Python (Triton) write them; their result is a boolean.
COMPARISONS = {"gt": ">", "lt": "<", "ge": ">=", "le": "<=", "eq": "==", "ne": "!="}
#: Operations whose value is their first operand's (a copy into a fresh tensor, a fill).
PASSTHROUGH = frozenset({"copy", "fill"})
#: Operations C and Python (Triton) write alike, as format strings over the operands.
INFIX = {"add": "({0} + {1})", "sub": "({0} - {1})", "mul": "({0} * {1})", "neg": "(-{0})",
         "addcmul": "({0} + {3} * {1} * {2})"}


def shared_expression(op: str, operands: list[str]) -> str | None:
    """The expression of an operation that every code generator writes the same way, or None."""
    if op in COMPARISONS:
        return f"({operands[0]} {COMPARISONS[op]} {operands[1]})"
    if op in PASSTHROUGH:
        return operands[0]
    if op in INFIX:
        return INFIX[op].format(*operands)
    return None
STEP_DTYPES = (torch.float32, torch.float64)


class Unsupported(Exception):
    """The transform does something this fast path cannot express; use the eager path."""


class NeedsEagerStep(Exception):
    """The transform adds state on this step (e.g. a momentum buffer on the first step)."""


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
    #: input key -> node index. Keys: ("param",), ("grad",), ("state", name), ("step",) for the
    #: step number as a Python float, ("hp", i) for the i-th runtime hyperparameter.
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


# -- hyperparameters -------------------------------------------------------------------------
def hp_structure(hyperparams: Mapping[str, Any]) -> tuple[tuple, list[str], list[float]]:
    """Split a group's hyperparameters into what shapes the program and what it reads at run time.

    Returns ``(structure, names, values)``: ``structure`` is hashable and identifies the traced
    program (which values are exact zeros, the flags, the tuple lengths); ``names``/``values``
    are the non-zero numbers, passed to the kernel as float64 on every step, so changing a
    learning rate never re-traces or recompiles.
    """
    names: list[str] = []
    values: list[float] = []

    def visit(name: str, value: Any) -> Any:
        if isinstance(value, bool) or value is None or isinstance(value, str):
            return ("static", value)
        if isinstance(value, Tensor):
            if value.numel() != 1 or value.is_complex():
                raise Unsupported(f"hyperparameter {name} is a tensor of shape {tuple(value.shape)}")
            value = value.item()
        if isinstance(value, (int, float)):
            number = float(value)
            if number == 0.0:
                return ("zero",)
            names.append(name)
            values.append(number)
            return ("number",)
        if isinstance(value, (tuple, list)):
            return ("seq", type(value).__name__, tuple(visit(f"{name}[{i}]", v) for i, v in enumerate(value)))
        raise Unsupported(f"hyperparameter {name} is a {type(value).__name__}")

    structure = tuple((key, visit(key, value)) for key, value in hyperparams.items())
    return structure, names, values


_plain = frozenset((int, float, bool, str, type(None)))
_recent: dict[tuple, tuple[tuple, list[float]]] = {}


def _is_plain(value: Any) -> bool:
    kind = type(value)
    return kind in _plain or (kind is tuple and all(type(v) in _plain for v in value))


def hp_key(hyperparams: Mapping[str, Any]) -> tuple | None:
    """A key equal for equal hyperparameters of equal types (``1 == True == 1.0``, but not as
    hyperparameters), or None when one is not a plain number, flag, string or None (or a tuple
    of those): a tensor's value can change in place, so it is read every time."""
    items = tuple(hyperparams.items())
    for _, value in items:
        if not _is_plain(value):
            return None
    return items + tuple(type(v) for _, v in items)


def hp_values(hyperparams: Mapping[str, Any], key: tuple | None = None) -> tuple[tuple, list[float]]:
    """The structure and runtime values only (what a step needs once the program exists).

    Remembers recent answers for hyperparameters made of plain numbers (``key``: their
    :func:`hp_key`, if the caller has it).
    """
    if key is None:
        key = hp_key(hyperparams)
        if key is None:
            structure, _, values = hp_structure(hyperparams)
            return structure, values
    found = _recent.get(key)
    if found is None:
        if len(_recent) > 256:
            _recent.clear()
        structure, _, values = hp_structure(hyperparams)
        found = _recent[key] = (structure, values)
    return found


def hp_rebuild(hyperparams: Mapping[str, Any], structure: tuple, number: Any) -> dict[str, Any]:
    """The hyperparameters as a transform sees them on a fast path: exact zeros as plain ``0``,
    the i-th runtime number as ``number(i)`` (a meta tensor to trace, a 0-d tensor to run)."""
    counter = iter(range(1 << 30))

    def rebuild(value: Any, shape: tuple) -> Any:
        kind = shape[0]
        if kind == "static":
            return shape[1]
        if kind == "zero":
            return 0
        if kind == "number":
            return number(next(counter))
        items = [rebuild(v, s) for v, s in zip(value, shape[2])]
        return tuple(items) if shape[1] == "tuple" else items

    return {key: rebuild(hyperparams[key], shape) for key, shape in structure}


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

    # values --------------------------------------------------------------------------------
    def add(self, node: Node) -> int:
        self.nodes.append(node)
        return len(self.nodes) - 1

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
                return self.add(Node("const", dtype=x.dtype, value=x.item()))
            raise Unsupported(f"the update reads a tensor of shape {tuple(x.shape)} that is neither "
                              "the parameter, its gradient, its state nor a scalar")
        if isinstance(x, bool):
            return self.add(Node("const", value=x))
        if isinstance(x, (int, float)):
            return self.add(Node("const", value=float(x)))
        raise Unsupported(f"the update passes a {type(x).__name__} ({x!r}) to a tensor operation")

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
        rule = OPS.get(name[:-1] if in_place else name)
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
        index = self.add(Node(op, tuple(self.value_of(x) for x in operands), out.dtype, out.dim() != 0))
        written = bound["self"] if in_place else bound.get("out")
        if isinstance(written, Tensor):
            if id(written) in self.aliased:
                raise Unsupported(f"aten.{name} writes to a tensor that has an alias (detach)")
            self.bind(written, index)
        self.bind(out, index)
        return out


# -- the operations: ATen call -> (op, operands) --------------------------------------------------
def _binary(op: str):
    return lambda a: (op, (a["self"], a["other"]))


def _with_alpha(op: str):
    """add/sub: ``self op alpha * other`` (ATen computes ``alpha * other`` with one rounding: fma)."""
    def rule(a: dict) -> tuple[str, tuple]:
        alpha = a.get("alpha", 1)
        if isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and alpha == 1:
            return op, (a["self"], a["other"])
        return op + "_alpha", (a["self"], a["other"], alpha)
    return rule


def _rsub(a: dict) -> tuple[str, tuple]:
    alpha = a.get("alpha", 1)
    if isinstance(alpha, (int, float)) and alpha == 1:
        return "sub", (a["other"], a["self"])
    return "sub_alpha", (a["other"], a["self"], alpha)


def _unary(op: str):
    return lambda a: (op, (a["self"],))


def _pow(a: dict) -> tuple[str, tuple]:
    return "pow", (a["self"], a["exponent"])


def _lerp(a: dict) -> tuple[str, tuple]:
    return "lerp", (a["self"], a["end"], a["weight"])


def _div(a: dict) -> tuple[str, tuple]:
    if a.get("rounding_mode") is not None:
        raise Unsupported("division with a rounding mode")
    return "div", (a["self"], a["other"])


def _clamp(a: dict) -> tuple[str, tuple]:
    low, high = a.get("min"), a.get("max")
    if low is None and high is None:
        raise Unsupported("clamp without bounds")
    if low is None:
        return "clamp_max", (a["self"], high)
    if high is None:
        return "clamp_min", (a["self"], low)
    return "clamp", (a["self"], low, high)


def _copy_like(a: dict) -> tuple[str, tuple]:
    return "copy", (a["self"],)


def _copy_into(a: dict) -> tuple[str, tuple]:
    return "copy", (a["src"],)


def _fill(a: dict) -> tuple[str, tuple]:
    return "fill", (a["value"],)


def _full_like(value: Any):
    return lambda a: ("fill", (a.get("fill_value", value),))


OPS: dict[str, Any] = {
    "add": _with_alpha("add"),
    "sub": _with_alpha("sub"),
    "rsub": _rsub,
    "mul": _binary("mul"),
    "div": _div,
    "neg": _unary("neg"),
    "sqrt": _unary("sqrt"),
    "rsqrt": _unary("rsqrt"),
    "reciprocal": _unary("reciprocal"),
    "abs": _unary("abs"),
    "sign": _unary("sign"),
    "sgn": _unary("sign"),
    "exp": _unary("exp"),
    "log": _unary("log"),
    "pow": _pow,
    "lerp": _lerp,
    "maximum": _binary("maximum"),
    "minimum": _binary("minimum"),
    "clamp": _clamp,
    "clamp_min": lambda a: ("clamp_min", (a["self"], a["min"])),
    "clamp_max": lambda a: ("clamp_max", (a["self"], a["max"])),
    "addcmul": lambda a: ("addcmul", (a["self"], a["tensor1"], a["tensor2"], a.get("value", 1))),
    "addcdiv": lambda a: ("addcdiv", (a["self"], a["tensor1"], a["tensor2"], a.get("value", 1))),
    "where": lambda a: ("where", (a["condition"], a["self"], a["other"])),
    "gt": _binary("gt"),
    "lt": _binary("lt"),
    "ge": _binary("ge"),
    "le": _binary("le"),
    "eq": _binary("eq"),
    "ne": _binary("ne"),
    "clone": _copy_like,
    "_to_copy": _copy_like,
    "copy": _copy_into,
    "fill": _fill,
    "zero": lambda a: ("fill", (0.0,)),
    "zeros_like": _full_like(0.0),
    "ones_like": _full_like(1.0),
    "full_like": _full_like(None),
    "scalar_tensor": lambda a: ("fill", (a["s"],)),
}


# -- tracing a transform -----------------------------------------------------------------------
def trace(transform: Transform, hyperparams: Mapping[str, Any], param_dtype: torch.dtype,
          state: Mapping[str, Any], counts_steps: bool) -> Program:
    """Record ``param += transform.update(grad, param, state, hp, step)`` for one parameter.

    ``state`` is one parameter's current state (only keys and dtypes are used). Raises
    :class:`Unsupported` when the math cannot be a kernel of this kind, and
    :class:`NeedsEagerStep` when the update would add state entries.
    """
    if param_dtype not in FLOAT_DTYPES:
        raise Unsupported(f"parameters of dtype {param_dtype}")
    structure, names, _ = hp_structure(hyperparams)
    rec = Recorder()
    meta = torch.device("meta")
    inputs: dict[tuple, int] = {}

    def vector_input(key: tuple, dtype: torch.dtype) -> Tensor:
        t = torch.empty(TRACE_LENGTH, dtype=dtype, device=meta)
        inputs[key] = rec.add(Node("input", dtype=dtype, vector=True, key=key))
        rec.bind(t, inputs[key])
        return t

    def scalar_input(key: tuple, dtype: torch.dtype) -> Tensor:
        t = torch.empty((), dtype=dtype, device=meta)
        inputs[key] = rec.add(Node("input", dtype=dtype, vector=False, key=key))
        rec.bind(t, inputs[key])
        return t

    param = vector_input(("param",), param_dtype)
    grad = vector_input(("grad",), param_dtype)
    traced_state: dict[str, Any] = {}
    state_dtypes: dict[str, torch.dtype] = {}
    for key, value in state.items():
        if key == "step":
            if not (isinstance(value, Tensor) and value.dim() == 0 and value.dtype in STEP_DTYPES):
                raise Unsupported("state['step'] is not a 0-d float tensor")
            traced_state[key] = scalar_input(("step_tensor",), value.dtype)
            state_dtypes[key] = value.dtype
            continue
        if not isinstance(value, Tensor) or value.dtype not in FLOAT_DTYPES or value.is_sparse:
            raise Unsupported(f"state {key!r} is not a dense float tensor")
        traced_state[key] = vector_input(("state", key), value.dtype)
        state_dtypes[key] = value.dtype
    if counts_steps and "step" not in state:
        raise Unsupported("the step count is missing from the state")
    step = scalar_input(("step",), torch.float64) if counts_steps else None

    hp = hp_rebuild(hyperparams, structure, lambda i: scalar_input(("hp", i), torch.float64))
    originals = dict(traced_state)
    try:
        with rec, torch.no_grad():
            param.add_(transform.update(grad, param, traced_state, hp, step))
    except Unsupported:
        raise
    except Exception as error:  # noqa: BLE001 - any failure while recording means "not supported"
        raise Unsupported(f"{type(error).__name__}: {error}") from error

    added = sorted(set(traced_state) - set(originals))
    if added:
        raise NeedsEagerStep(f"the update adds state {added}")
    if set(originals) - set(traced_state):
        raise Unsupported("the update removes state entries")
    for key, tensor in originals.items():
        if traced_state[key] is not tensor:
            raise Unsupported(f"the update replaces state {key!r} with a new tensor")
    writes: list[tuple[tuple, int]] = []
    targets = [(("param",), param)] + [(("state", k), t) for k, t in originals.items() if k != "step"]
    for key, tensor in targets:
        index = rec.current[id(tensor)]
        if index != inputs[key]:
            writes.append((key, index))
    read_only = [(("grad",), grad)] + ([(("step_tensor",), originals["step"])] if "step" in originals else [])
    for key, tensor in read_only:
        if rec.current[id(tensor)] != inputs[key]:
            raise Unsupported(f"the update writes {key[0]}")
    return Program(rec.nodes, inputs, writes, names, state_dtypes)
