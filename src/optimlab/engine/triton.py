"""The GPU fast path: a traced update compiled to one Triton kernel that steps a whole group.

The GPU twin of :mod:`optimlab.engine.cpu`: the same traced :class:`~optimlab.engine.trace.Program`
(the transform's own math, recorded once), the same layout of one pointer array per group
(parameters, gradients where autograd left them, state tensors), one kernel launch per group
and dtype signature, hyperparameters read at run time so that a schedule never recompiles.

* **Vector math on the GPU.** Each program instance steps ``BLOCK`` elements of one tensor
  (a table maps blocks to tensors), loading each input once and storing each output once;
  bfloat16 and float16 are computed in float and rounded after every operation, as torch's
  eager kernels round every result (bfloat16 by integer arithmetic, so the rounding is the
  same under Triton's CPU interpreter as on the GPU).
* **Scalar math on the host.** What the program derives per tensor from hyperparameters and
  the step count (``1 - beta2 ** step``, reciprocals of divisors) is computed in double
  precision on the host once per distinct step count, as the eager path computes it with
  Python floats, and handed to the kernel as a table.

Triton is imported only when a CUDA parameter (or a test) needs it; where it is missing the
engine keeps the ``compiled`` path. Under ``TRITON_INTERPRET=1`` the kernels run on CPU
tensors through Triton's interpreter, which is how the tests check this path without a GPU.
"""

from __future__ import annotations

import array
import hashlib
import importlib.util
import itertools
import operator
import os
import string
import sys
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from optimlab.engine.compiled import dense_on_device
from optimlab.engine.cpu import BuildError, cache_dir, kernel_key, step_counter, traced_kernel
from optimlab.engine.eager import run_eager
from optimlab.engine.errors import EagerByDesign, NeedsEagerStep, Unsupported
from optimlab.engine.expressions import (
    COMPARISONS,
    RECIPROCAL_DIVISION,
    SCALARS,
    Dialect,
    comparison_dtype,
    divide,
    expression,
)
from optimlab.engine.fused import group_cache, same_state, same_tensors
from optimlab.engine.hyper import hp_values
from optimlab.engine.paths import path_counts, warn_once
from optimlab.engine.trace import STEP, Node, Program, Roles
from optimlab.engine.work import transform_hyperparams

#: Bump when the generated code changes meaning.
CODEGEN_VERSION = 3
#: Elements per program instance.
BLOCK = 1024

_data_ptr = torch.Tensor.data_ptr
_get_device = torch.Tensor.get_device
_is_cpu = operator.attrgetter("is_cpu")
_is_cuda = operator.attrgetter("is_cuda")

TL_DTYPE = {torch.float32: "tl.float32", torch.float64: "tl.float64", torch.bfloat16: "tl.float32",
            torch.float16: "tl.float32"}
POINTER = {torch.float32: "tl.float32", torch.float64: "tl.float64", torch.bfloat16: "tl.uint16",
           torch.float16: "tl.float16"}

#: Whether the ``auto`` path sends CUDA parameters here (else to ``compiled``). Off until this
#: path has run on a GPU: its kernels are tested through Triton's CPU interpreter only so far.
#: ``OPTIMLAB_TRITON_AUTO=1`` turns it on; ``engine.set_path("triton")`` forces the path.
AUTO_ON_CUDA = os.environ.get("OPTIMLAB_TRITON_AUTO", "0") == "1"

_available: bool | None = None


def available() -> bool:
    """Whether Triton can be imported here."""
    global _available
    if _available is None:
        _available = importlib.util.find_spec("triton") is not None
    return _available


def chosen(path: str) -> bool:
    """Whether the engine's path ``path`` sends CUDA parameters to this one."""
    return path == "triton" or (path == "auto" and AUTO_ON_CUDA and available())


# -- host side: the scalar section -------------------------------------------------------------
def _rounding(dtype: torch.dtype | None) -> Any:
    """How a scalar result is rounded to its dtype (None: a Python float, kept as is)."""
    if dtype is None or dtype == torch.float64:
        return None
    if dtype == torch.bool:
        return bool
    if dtype == torch.float32:
        return lambda value: float(np.float32(value))
    return lambda value: torch.tensor(float(value), dtype=dtype).item()  # bfloat16/float16 as torch rounds


class ScalarPlan:
    """Which scalar values the kernel reads, and how the host computes them for one tensor.

    ``slots``: (node index, whether the kernel wants its reciprocal); the kernel reads slot k of
    tensor t at ``scalars[t * K + k]``. The scalar section is evaluated in program order with
    Python floats: double precision, as the eager path computes it.
    """

    def __init__(self, program: Program) -> None:
        self.program = program
        self.slots: list[tuple[int, bool]] = []
        self.slot_of: dict[tuple[int, bool], int] = {}
        self.inputs: list[tuple[int, str, int | None, Any]] = []
        self.operations: list[tuple[int, Any, tuple[int, ...], Any]] = []
        self.constants: dict[int, Any] = {}
        for index, node in enumerate(program.nodes):
            if node.vector:
                continue
            if node.op == "input":
                self.inputs.append((index, node.key[0], node.key[1] if node.key[0] == "hp" else None,
                                    _rounding(node.dtype)))
            elif node.op == "const":
                self.constants[index] = node.value
            elif node.op in SCALARS:
                self.operations.append((index, SCALARS[node.op], node.args, _rounding(node.dtype)))
            else:
                raise Unsupported(f"no scalar code for operation {node.op!r}")

    def slot(self, index: int, reciprocal: bool = False) -> int:
        key = (index, reciprocal)
        if key not in self.slot_of:
            self.slot_of[key] = len(self.slots)
            self.slots.append(key)
        return self.slot_of[key]

    def values(self, hp: Sequence[float], step: float | None, step_value: float | None) -> list[float]:
        computed: dict[int, Any] = dict(self.constants)
        for index, kind, position, rounding in self.inputs:
            value = hp[position] if kind == "hp" else step if kind == "step" else step_value
            computed[index] = rounding(value) if rounding is not None and value is not None else value
        for index, function, args, rounding in self.operations:
            value = function(*[computed[i] for i in args])
            computed[index] = rounding(value) if rounding is not None else value
        return [divide(1.0, float(computed[index])) if reciprocal else float(computed[index])
                for index, reciprocal in self.slots]


# -- device side: the vector section -----------------------------------------------------------
HELPERS = '''
import triton
import triton.language as tl


@triton.jit
def load_bf16(bits):
    return (bits.to(tl.uint32) << 16).to(tl.float32, bitcast=True)


@triton.jit
def store_bf16(x):
    # round to nearest even, as c10::BFloat16 converts; NaN stays NaN
    u = x.to(tl.uint32, bitcast=True)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).to(tl.uint16)
    return tl.where((u & 0x7FFFFFFF) > 0x7F800000, tl.full(u.shape, 0x7FC0, tl.uint16), rounded)


@triton.jit
def round_bf16(x):
    return load_bf16(store_bf16(x))


@triton.jit
def round_f16(x):
    return x.to(tl.float16).to(tl.float32)
'''


class TritonDialect(Dialect):
    """Triton, computing in ``compute``: float32 division and square root IEEE-rounded
    (``div_rn``, ``sqrt_rn``), as the CPU's and torch's are; float64 ones are already."""

    def __init__(self, compute: torch.dtype) -> None:
        self.type = TL_DTYPE[compute]
        self.precise = compute == torch.float64

    def number(self, value: float) -> str:
        return f"tl.full([], {float(value)!r}, {self.type})"

    def where(self, condition: str, if_true: str, if_false: str) -> str:
        return f"tl.where({condition}, {if_true}, {if_false})"

    def fma(self, a: str, b: str, c: str) -> str:
        return f"tl.fma({a}, {b}, {c})"

    def div(self, a: str, b: str) -> str:
        return f"({a} / {b})" if self.precise else f"tl.math.div_rn({a}, {b})"

    def sqrt(self, a: str) -> str:
        return f"tl.sqrt({a})" if self.precise else f"tl.sqrt_rn({a})"

    def call(self, function: str, a: str) -> str:
        return f"tl.{function}({a})"

    def from_bool(self, condition: str) -> str:
        return f"{condition}.to({self.type})"

    def pow(self, base: str, exponent: str) -> str:
        raise Unsupported("a tensor raised to a power other than 2, 3, 1/2, -1/2, -1, -2 or 1")


def _compute_dtype(nodes: list[Node], node: Node) -> torch.dtype:
    """The dtype an operation computes in: a comparison's promoted operands, else its own."""
    return comparison_dtype(nodes, node.args) if node.op in COMPARISONS else node.dtype


class Source:
    """The Triton source of one traced program, written section by section."""

    def __init__(self, program: Program, roles: Roles) -> None:
        self.program, self.roles = program, roles
        self.plan = ScalarPlan(program)
        self.names: dict[int, str] = {}
        self.pointers: list[str] = []
        self.lines: list[str] = []
        self.stores: list[str] = []

    def scalar(self, index: int, compute: torch.dtype, reciprocal: bool = False) -> str:
        """A per-tensor scalar, read from the table the host computes."""
        return f"tl.load(scalars + t * K + {self.plan.slot(index, reciprocal)}).to({TL_DTYPE[compute]})"

    def inputs(self) -> None:
        program = self.program
        used = set(i for n in program.nodes for i in n.args) | {i for _, i in program.writes}
        written = {key for key, _ in program.writes}
        for key, index in program.inputs.items():
            if key[0] not in ("param", "grad", "state"):
                continue
            role = self.roles.index(key)
            dtype = self.roles.dtypes[role]
            if index in used or key in written:
                self.pointers.append(f"    R{role} = tl.load(ptrs + {role} * nt + t)"
                                     f".to(tl.pointer_type({POINTER[dtype]}))")
            if index in used:
                raw = f"tl.load(R{role} + offs, mask=mask)"
                value = (f"load_bf16({raw})" if dtype == torch.bfloat16
                         else f"{raw}.to(tl.float32)" if dtype == torch.float16 else raw)
                self.lines.append(f"    v{index} = {value}")
            self.names[index] = f"v{index}"

    def operands(self, node: Node, compute: torch.dtype) -> list[str]:
        nodes, out = self.program.nodes, []
        for position, i in enumerate(node.args):
            arg = nodes[i]
            if node.op == "where" and position == 0:
                out.append(self.names[i] if arg.vector else f"({self.scalar(i, torch.float64)} != 0)")
            elif not arg.vector:
                out.append(self.scalar(i, compute))
            elif arg.dtype != compute and TL_DTYPE[arg.dtype] != TL_DTYPE[compute]:
                out.append(f"{self.names[i]}.to({TL_DTYPE[compute]})")
            else:
                out.append(self.names[i])
        return out

    def operation(self, index: int) -> None:
        """One vector node (scalar ones are the host's)."""
        nodes = self.program.nodes
        node = nodes[index]
        compute = _compute_dtype(nodes, node)
        if compute not in TL_DTYPE:
            raise Unsupported(f"vector math in {compute}")
        operands = self.operands(node, compute)
        divisor = nodes[node.args[1]] if node.op == "div" else None
        exponent = nodes[node.args[1]] if node.op == "pow" else None
        if RECIPROCAL_DIVISION and divisor is not None and not divisor.vector:
            text = f"({operands[0]} * {self.scalar(node.args[1], compute, reciprocal=True)})"
        else:
            constant = float(exponent.value) if exponent is not None and exponent.op == "const" else None
            text = expression(TritonDialect(compute), node.op, operands, constant)
        if node.dtype == torch.bfloat16:
            text = f"round_bf16({text})"
        elif node.dtype == torch.float16:
            text = f"round_f16({text})"
        elif node.dtype != compute and node.dtype in TL_DTYPE:
            text = f"({text}).to({TL_DTYPE[node.dtype]})"
        self.lines.append(f"    v{index} = {text}")
        self.names[index] = f"v{index}"

    def outputs(self) -> None:
        for key, index in self.program.writes:
            role = self.roles.index(key)
            dtype = self.roles.dtypes[role]
            value = (self.names[index] if self.program.nodes[index].vector
                     else f"tl.full([BLOCK], 0.0, tl.float64) + {self.scalar(index, torch.float64)}")
            value = f"store_bf16({value}.to(tl.float32))" if dtype == torch.bfloat16 else f"{value}.to({POINTER[dtype]})"
            self.stores.append(f"    tl.store(R{role} + offs, {value}, mask=mask)")

    def text(self) -> str:
        description = "\n".join("# " + line for line in self.program.describe().splitlines())
        return KERNEL.substitute(version=CODEGEN_VERSION, description=description, helpers=HELPERS,
                                 pointers="\n".join(self.pointers), lines="\n".join(self.lines),
                                 stores="\n".join(self.stores))


KERNEL = string.Template('''# optimlab fused GPU step (Triton codegen v$version), from a traced Transform.update.
$description
$helpers

@triton.jit(do_not_specialize=["nt"])  # one compiled kernel for groups of any size
def optimlab_step(ptrs, scalars, block_tensor, block_start, numels, nt, K: tl.constexpr, BLOCK: tl.constexpr):
    b = tl.program_id(0)
    t = tl.load(block_tensor + b)
    offs = tl.load(block_start + b) + tl.arange(0, BLOCK)
    mask = offs < tl.load(numels + t)
$pointers
$lines
$stores
''')


def generate(program: Program, roles: Roles) -> tuple[str, ScalarPlan]:
    """Python source of the Triton kernel ``optimlab_step`` for a traced program, and the plan
    of the scalar table the host computes for it."""
    source = Source(program, roles)
    source.inputs()
    for index, node in enumerate(program.nodes):
        if node.vector and node.op != "input":
            source.operation(index)
    source.outputs()
    return source.text(), source.plan


# -- building ----------------------------------------------------------------------------------
class Kernel:
    """A generated kernel, the layout of its pointer array and the plan of its scalar table."""

    def __init__(self, function: Any, roles: Roles, plan: ScalarPlan, source: str) -> None:
        self.function = function
        self.roles = roles
        self.plan = plan
        self.source = source


def load(source: str) -> Any:
    """The ``optimlab_step`` of ``source``, written to the cache (Triton reads a kernel's
    source from its file) and imported."""
    key = hashlib.sha256(f"{source}\0{os.environ.get('TRITON_INTERPRET', '0')}".encode()).hexdigest()[:32]
    path = cache_dir().parent / "triton" / f"step_{key}.py"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(source)
        os.replace(temporary, path)
    name = f"optimlab_triton_step_{key}"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module.optimlab_step


#: transform -> {(structure, signature, counts_steps): Kernel or the reason there is none}
_kernels: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def kernel_for(transform: Any, hyperparams: Mapping[str, Any], structure: tuple, sig: tuple, state: Mapping[str, Any],
               counts_steps: bool, form: str = STEP) -> Kernel | Exception:
    """The Triton kernel for a transform on parameters of one signature, or the reason there is none.
    ``form``: what the kernel does with the update (:data:`optimlab.engine.trace.STEP`, ...)."""
    def make(program: Program, roles: Roles) -> Kernel:
        source, plan = generate(program, roles)
        return Kernel(load(source), roles, plan, source)

    return traced_kernel(_kernels, transform, hyperparams, (structure, sig, counts_steps), state, make, form)


# -- running a group ---------------------------------------------------------------------------
def split(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], states: Sequence[Mapping[str, Any]],
          indices: Sequence[int], any_device: bool) -> tuple[list[int], list[int]]:
    """The parameters (by index) this path takes, and the rest."""
    mine, rest = [], []
    for i in indices:
        p, g, state = params[i], grads[i], states[i]
        # plain tensors (the kernel reads raw addresses), something to launch for, float state
        # and a 0-d step count (what the program is traced with)
        ok = (type(p) in (torch.Tensor, torch.nn.Parameter) and type(g) is torch.Tensor and p.numel() > 0
              and dense_on_device(p, g, state, any_device)
              and all(isinstance(v, torch.Tensor) and v.dim() == 0 if k == "step" else v.dtype in TL_DTYPE
                      for k, v in state.items()))
        (mine if ok else rest).append(i)
    return mine, rest


_blocks: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def block_table(numels: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """For each program instance: the tensor it steps and where its block starts."""
    key = (numels, device)
    found = _blocks.get(key)
    if found is None:
        tensors, starts = [], []
        for t, n in enumerate(numels):
            for start in range(0, n, BLOCK):
                tensors.append(t)
                starts.append(start)
        if len(_blocks) > 64:
            _blocks.clear()
        found = _blocks[key] = (torch.tensor(tensors, dtype=torch.int32, device=device),
                                torch.tensor(starts, dtype=torch.int64, device=device))
    return found


def signature(p: torch.Tensor, state: Mapping[str, Any]) -> tuple:
    step = state.get("step")
    return (p.dtype, tuple(sorted((k, v.dtype) for k, v in state.items() if k != "step")),
            step.dtype if isinstance(step, torch.Tensor) else None, p.device)


def run(work: Any, indices: Sequence[int], hyperparams: Mapping[str, Any], initialize: Any) -> list[int]:
    """Step the parameters at ``indices`` (one kernel launch per signature); returns the ones
    left for another path."""
    try:
        structure, values = hp_values(hyperparams)
    except Unsupported:
        return list(indices)
    for i in indices:
        if not work.states[i]:
            initialize(work, i)
    batches: dict[tuple, list[int]] = {}
    for i in indices:
        batches.setdefault(signature(work.params[i], work.states[i]), []).append(i)
    left: list[int] = []
    for sig, members in batches.items():
        kernel = kernel_for(work.transform, hyperparams, structure, sig[:3], work.states[members[0]],
                            work.counts_steps, work.form)
        if isinstance(kernel, Exception):
            if not isinstance(kernel, (NeedsEagerStep, EagerByDesign)):
                warn_once(f"optimlab: {work.transform!r} has no Triton kernel ({kernel}); using another path")
            left += members
            continue
        key = kernel_key((structure, sig[:3], work.counts_steps), work.form)
        try:
            batch = Batch(kernel, key, work, members, sig[3])
            batch.launch(work, values)
        except Exception as error:  # noqa: BLE001 - a failed launch must never stop training
            forget(work, key, error)
            left += members
            continue
        # The whole group of a whole chain: keep it for next time (a part of a chain of mixed
        # kinds steps with state views made for that step).
        if work.form == STEP and len(members) == len(work.params) and len(batches) == 1:
            global _steady_groups
            group_cache(work).triton = Steady(batch, work, structure)
            _steady_groups = True
    return left


def forget(work: Any, key: tuple, error: Exception) -> None:
    """A launch failed: this transform and signature use another path from now on."""
    _kernels[work.transform][key] = Unsupported(f"{type(error).__name__}: {error}")
    warn_once(f"optimlab: the Triton step of {work.transform!r} failed ({type(error).__name__}: {error}); "
              "using another path")


class Batch:
    """The parameters of one kernel launch and the device arrays the kernel reads."""

    def __init__(self, kernel: Kernel, key: tuple, work: Any, members: Sequence[int], device: torch.device) -> None:
        self.kernel = kernel
        self.key = key  # the kernel's key in _kernels
        self.device = device
        self.params = params = [work.params[i] for i in members]
        states = [work.states[i] for i in members]
        self.n = n = len(params)
        pointers = [p.data_ptr() for p in params] + [0] * n
        for name in kernel.roles.names[2:]:
            if name.startswith("state:"):
                state_key = name[len("state:"):]
                pointers += [s[state_key].data_ptr() for s in states]
        #: The pointer array on the device (the gradients' addresses are refreshed every step).
        self.pointers = torch.tensor(pointers, dtype=torch.int64).to(device)
        numels = tuple(p.numel() for p in params)
        self.numels = torch.tensor(numels, dtype=torch.int64).to(device)
        self.blocks, self.starts = block_table(numels, device)
        self.members = list(members)
        self.k = max(1, len(kernel.plan.slots))
        #: The step counts, and (where they are CPU tensors of one dtype, as torch.optim keeps
        #: them) their addresses for the compiled counter, which moves and reads them in one call.
        self.step_tensors = [s["step"] for s in states] if kernel.roles.step_dtype is not None else []
        self.counter = None
        if self.step_tensors and all(t.is_cpu and t.dim() == 0 and t.dtype is self.step_tensors[0].dtype
                                     and t.dtype in (torch.float32, torch.float64) for t in self.step_tensors):
            try:
                self.counter = step_counter(self.step_tensors[0].dtype)
            except BuildError:
                pass
            else:
                self.step_pointers = array.array("q", [t.data_ptr() for t in self.step_tensors])
                self.step_io = array.array("d", [0.0] * n)

    def move_steps(self, delta: float) -> list[float]:
        """``state['step'] += delta`` for every member; their new values."""
        if self.counter is not None:
            self.step_io[0] = delta
            self.counter(self.n, self.step_pointers.buffer_info()[0], 0, self.step_io.buffer_info()[0], 1)
            return self.step_io.tolist()
        torch._foreach_add_(self.step_tensors, delta)
        try:  # one call for counts of one dtype on one device
            return torch.stack(self.step_tensors).tolist()
        except RuntimeError:
            return [t.item() for t in self.step_tensors]

    def launch(self, work: Any, values: list[float]) -> None:
        """``state['step'] += 1`` and ``p += update`` for every member, in one kernel launch; a
        launch that fails puts the step counts back, so that another path can take the step."""
        n = self.n
        grads = [work.grads[i] for i in self.members]
        # (A part of a chain of mixed kinds reads counts the engine has already advanced.)
        delta = 1.0 if self.kernel.roles.advances_steps else 0.0
        steps: list[float | None] = self.move_steps(delta) if self.step_tensors else [None] * n
        try:
            self.run_kernel(grads, values, steps)
        except BaseException:
            if self.step_tensors and delta:
                self.move_steps(-delta)  # as before: the step goes to another path
            raise
        # Written through raw pointers: bump the parameters' version counters, as an in-place op would.
        torch.autograd.graph.increment_version(self.params)

    def run_kernel(self, grads: list[torch.Tensor], values: list[float], steps: list[float | None]) -> None:
        n = self.n
        rows: dict[float | None, list[float]] = {}
        for step in steps:  # the scalar section, once per distinct step count
            if step not in rows:
                rows[step] = self.kernel.plan.values(values, step, step) or [0.0]
        if len(rows) == 1:
            scalars = array.array("d", next(iter(rows.values()))) * n
        else:
            scalars = array.array("d", itertools.chain.from_iterable(rows[step] for step in steps))
        # From pageable host memory: each copy is staged before it returns, so the host arrays
        # may change for the next step while the kernel runs.
        grad_pointers = array.array("q", map(_data_ptr, grads))
        self.pointers[n:2 * n].copy_(torch.frombuffer(grad_pointers, dtype=torch.int64), non_blocking=True)
        table = torch.frombuffer(scalars, dtype=torch.float64).to(self.device, non_blocking=True)
        self.kernel.function[(len(self.blocks),)](self.pointers, table, self.blocks, self.starts, self.numels, n,
                                                  K=self.k, BLOCK=BLOCK)


#: Whether any group has ever had a steady Triton step (spares CPU-only programs the lookup).
_steady_groups = False


class Steady:
    """A group whose last step was one Triton launch over all its parameters, to be confirmed
    on the next step with a few list-wide comparisons instead of the full checks: the same
    parameter objects at the same addresses and sizes, contiguous; gradients plain contiguous
    tensors of the parameters' dtype on their device; the same state tensors (by the state
    table's version, else by identity); the same hyperparameter structure. The state tensors'
    storages are held, so the kernel never writes to freed memory."""

    def __init__(self, batch: Batch, work: Any, structure: tuple) -> None:
        self.batch = batch
        self.structure = structure
        self.params = batch.params  # the whole group, in order
        self.param_pointers = [p.data_ptr() for p in self.params]
        self.numels = [p.numel() for p in self.params]
        self.dtype = self.params[0].dtype
        self.dtypes = [self.dtype] * len(self.params)
        self.device = batch.device
        self.device_indices = [-1 if batch.device.type == "cpu" else batch.device.index or 0] * len(self.params)
        self.on_device = _is_cpu if batch.device.type == "cpu" else _is_cuda
        self.values = [v for s in work.states for v in s.values()]
        self.storages = [v.untyped_storage() for v in self.values]
        self.token = work.state_token or (None, None)

    def confirm(self, work: Any, structure: tuple) -> bool:
        params, grads = work.params, work.grads
        n = len(self.params)
        if len(params) != n or structure != self.structure:
            return False
        try:
            return (same_tensors(self, params, grads, self.on_device)
                    and list(map(_get_device, grads)) == self.device_indices and same_state(self, work))
        except (RuntimeError, TypeError, AttributeError):
            return False


def steady_step(work: Any) -> Any:
    """The step of a group whose last step was one Triton launch and that is as it was, or None
    (the engine then plans the step in full)."""
    if not _steady_groups:
        return None
    cache = group_cache(work)
    steady = cache.triton
    if steady is None:
        return None
    hyperparams = transform_hyperparams(work)
    try:
        structure, values = hp_values(hyperparams)
    except Unsupported:
        structure, values = None, []
    if not steady.confirm(work, structure):
        cache.triton = None
        return None

    def step() -> None:
        try:
            steady.batch.launch(work, values)
        except Exception as error:  # noqa: BLE001 - as in run(): never stop training
            cache.triton = None
            forget(work, steady.batch.key, error)
            run_eager(work)
            return
        path_counts["triton"] += len(work.params)

    return step
