"""C source for a traced program: the CPU kernel ``optimlab_step`` (built by :mod:`optimlab.engine.cpu`).

The kernel takes all tensors of a group at once through an array of data pointers (laid out by
:class:`~optimlab.engine.trace.Roles`), splits the group's elements evenly over OpenMP threads,
computes each tensor's scalars (``1 - beta2 ** step``, reciprocals of divisors) once per
tensor, runs the vector section once per element (each input loaded once, each output stored
once), and increments each parameter's ``state['step']`` itself. 0-d state (NAdam's
``mu_product``) is updated by one thread, in a pass over the tensors before the others start;
that pass keeps the old values, which every thread's copy of the scalar section reads. Operations are written from
the one table, :mod:`optimlab.engine.expressions`, in C's :class:`CDialect`: each in its result
dtype, scalar operands cast to it as torch casts Python numbers and 0-d tensors; scalar-only
math in double precision, as the eager path's Python floats.
"""

from __future__ import annotations

import string

import torch

from optimlab.engine.expressions import (
    COMPARISONS,
    RECIPROCAL_DIVISION,
    Dialect,
    comparison_dtype,
    expression,
)
from optimlab.engine.trace import Node, Program, Roles

#: Bump when the generated code changes meaning (old cached kernels are then ignored).
CODEGEN_VERSION = 7

#: Below this many elements in a call the kernel stays on one thread (waking threads costs more).
PARALLEL_MIN_ELEMENTS = 32768

#: C type a value of each dtype is computed in (half types in float, rounded after every
#: operation as torch's CPU kernels round each result), and the type it is stored as.
CTYPE = {torch.float32: "float", torch.float64: "double", torch.bool: "int",
         torch.bfloat16: "float", torch.float16: "float"}
STORAGE = {torch.float32: "float", torch.float64: "double", torch.bfloat16: "uint16_t", torch.float16: "uint16_t"}
LOAD = {torch.bfloat16: "load_bf16", torch.float16: "load_f16"}
STORE = {torch.bfloat16: "store_bf16", torch.float16: "store_f16"}
ROUND = {torch.bfloat16: "round_bf16", torch.float16: "round_f16"}
SUFFIX = {"float": "f", "double": "", "int": ""}
FUNCTIONS = {"abs": "fabs", "exp": "exp", "log": "log"}


def literal(value: float | bool, ctype: str) -> str:
    """A number as a C constant of ``ctype`` (exact: hexadecimal floating point)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if value != value:
        return f"(({ctype})NAN)"
    if value in (float("inf"), float("-inf")):
        return f"(({ctype})({'-' if value < 0 else ''}INFINITY))"
    return f"(({ctype}){float(value).hex()})"


class CDialect(Dialect):
    """C99 with libm, computing in ``ctype`` (``float`` or ``double``)."""

    def __init__(self, ctype: str) -> None:
        self.ctype = ctype
        self.suffix = SUFFIX[ctype]

    def number(self, value: float) -> str:
        return literal(value, self.ctype)

    def where(self, condition: str, if_true: str, if_false: str) -> str:
        return f"({condition} ? {if_true} : {if_false})"

    def fma(self, a: str, b: str, c: str) -> str:
        return f"fma{self.suffix}({a}, {b}, {c})"

    def div(self, a: str, b: str) -> str:
        return f"({a} / {b})"

    def sqrt(self, a: str) -> str:
        return f"sqrt{self.suffix}({a})"

    def call(self, function: str, a: str) -> str:
        return f"{FUNCTIONS[function]}{self.suffix}({a})"

    def from_bool(self, condition: str) -> str:
        return f"(({self.ctype}){condition})"

    def pow(self, base: str, exponent: str) -> str:
        return f"pow{self.suffix}({base}, {exponent})"


HELPERS = r"""
/* bfloat16 and float16 are stored as their bits and computed in float; every result is
   rounded to the nearest even value of the type, as c10::BFloat16 and c10::Half convert. */
static inline float load_bf16(uint16_t b) { uint32_t u = (uint32_t)b << 16; float f; memcpy(&f, &u, 4); return f; }
static inline uint16_t store_bf16(float f) {
    uint32_t u; memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)0x7fc0u;  /* NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16); }
static inline float round_bf16(float f) { return load_bf16(store_bf16(f)); }
static inline float load_f16(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu, u;
    float f;
    if (exponent == 0) { f = (float)mantissa * 0x1p-24f; return sign ? -f : f; }  /* zero, subnormal */
    u = exponent == 31 ? (sign | 0x7f800000u | (mantissa << 13))                 /* inf, NaN */
                       : (sign | ((exponent + 112u) << 23) | (mantissa << 13));
    memcpy(&f, &u, 4); return f; }
static inline uint16_t store_f16(float f) {
    uint32_t u; memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);                        /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);                       /* rounds to inf */
    if (a < 0x38800000u) {                                                         /* subnormal half */
        float v; memcpy(&v, &a, 4);
        return (uint16_t)(sign | (uint32_t)nearbyintf(v * 0x1p24f)); }
    return (uint16_t)(sign | (((a + 0xfffu + ((a >> 13) & 1u)) >> 13) - (112u << 10))); }
static inline float round_f16(float f) { return load_f16(store_f16(f)); }
"""


class Section:
    """The generated lines of one kernel, by where they go."""

    def __init__(self) -> None:
        self.names: dict[int, str | None] = {}  # node -> C name (None: a literal, written where used)
        self.pointers: list[str] = []  # per tensor: its data pointers
        self.hp_locals: list[str] = []  # per call: the hyperparameters, read into locals
        self.held: list[str] = []      # per tensor, in the threads: 0-d state as it was before the step
        self.tensor_loads: list[str] = []   # per tensor, in the 0-d state pass: its 0-d state, kept
        self.tensor_stores: list[str] = []  # per tensor, in the 0-d state pass: new 0-d state
        self.scalars: list[str] = []   # per tensor: values the same for all its elements
        self.loads: list[str] = []     # per element: inputs
        self.vectors: list[str] = []   # per element: computed values
        self.stores: list[str] = []    # per element: outputs


def inputs(program: Program, roles: Roles, out: Section) -> None:
    """Pointers to, and loads of, the tensors the program reads; names of its scalar inputs."""
    used = set(i for n in program.nodes for i in n.args) | {i for _, i in program.writes}
    written = {key for key, _ in program.writes}
    for key, index in program.inputs.items():
        if key[0] in ("param", "grad", "state"):
            role = roles.index(key)
            dtype = roles.dtypes[role]
            storage, ctype = STORAGE[dtype], CTYPE[dtype]
            if index in used or key in written:
                out.pointers.append(f"        {storage}* restrict R{role} = ({storage}*)ptrs[{role} * nt + t] + lo;")
            if index in used:
                load = f"{LOAD[dtype]}(R{role}[i])" if dtype in LOAD else f"R{role}[i]"
                out.loads.append(f"            const {ctype} v{index} = {load};")
            out.names[index] = f"v{index}"
        elif key[0] == "tensor_state":
            role = roles.index(key)
            dtype = roles.dtypes[role]
            slot = f"held[{roles.tensor_state_keys.index(key[1])} * nt + t]"
            load = f"*({STORAGE[dtype]}*)ptrs[{role} * nt + t]"
            load = f"{LOAD[dtype]}({load})" if dtype in LOAD else load
            out.tensor_loads.append(f"        const {CTYPE[dtype]} v{index} = {load};\n"
                                    f"        {slot} = (double)v{index};")
            out.held.append(f"        const {CTYPE[dtype]} v{index} = ({CTYPE[dtype]}){slot};")
            out.names[index] = f"v{index}"
        else:
            out.names[index] = {"step": "step", "step_tensor": "step_value"}.get(key[0]) or f"hp{key[1]}"
            if key[0] == "hp":
                # Read once into a local: a value read from memory only on one side of a
                # select (``s < 0 ? eta_minus : ...``) keeps the compiler from vectorizing.
                out.hp_locals.append(f"    const double hp{key[1]} = hp[{key[1]}];")


def operands(nodes: list[Node], node: Node, compute: str, names: dict[int, str | None]) -> list[str]:
    """The node's operands in its compute type (torch casts operands to the op's dtype)."""
    out = []
    for position, i in enumerate(node.args):
        arg = nodes[i]
        want = "int" if node.op == "where" and position == 0 else compute
        if arg.op == "const":
            out.append(literal(arg.value, want))
        elif CTYPE[arg.dtype] != want:
            out.append(f"(({want}){names[i]})")
        else:
            out.append(names[i])
    return out


def operation(nodes: list[Node], index: int, out: Section) -> None:
    """One computed node: its C expression, as a per-tensor scalar or a per-element value."""
    node = nodes[index]
    ctype = CTYPE[node.dtype]
    compute = CTYPE[comparison_dtype(nodes, node.args)] if node.op in COMPARISONS else ctype
    args = operands(nodes, node, compute, out.names)
    divisor = nodes[node.args[1]] if node.op == "div" else None
    exponent = nodes[node.args[1]] if node.op == "pow" else None
    if RECIPROCAL_DIVISION and divisor is not None and node.vector and not divisor.vector:
        # x / s with s the same for the whole tensor: one division per tensor (in double,
        # then rounded once), then products.
        raw = literal(divisor.value, "double") if divisor.op == "const" else f"(double){out.names[node.args[1]]}"
        out.scalars.append(f"        const {compute} r{index} = ({compute})(1.0 / {raw});")
        text = f"({args[0]} * r{index})"
    else:
        constant = (float(exponent.value) if exponent is not None and node.vector and exponent.op == "const"
                    and not exponent.vector else None)
        text = expression(CDialect(compute), node.op, args, constant)
    if compute != ctype:
        text = f"(({ctype}){text})"
    if node.dtype in ROUND:
        text = f"{ROUND[node.dtype]}({text})"
    if node.vector:
        out.vectors.append(f"            const {ctype} v{index} = {text};")
        out.names[index] = f"v{index}"
    else:
        out.scalars.append(f"        const {ctype} s{index} = {text};")
        out.names[index] = f"s{index}"


def stores(program: Program, roles: Roles, out: Section) -> None:
    for key, index in program.writes:
        role = roles.index(key)
        dtype = roles.dtypes[role]
        value = out.names[index]
        if CTYPE[dtype] != CTYPE[program.nodes[index].dtype]:
            value = f"(({CTYPE[dtype]}){value})"
        if dtype in STORE:
            value = f"{STORE[dtype]}({value})"
        if key[0] == "tensor_state":
            out.tensor_stores.append(f"        *({STORAGE[dtype]}*)ptrs[{role} * nt + t] = {value};")
        else:
            out.stores.append(f"            R{role}[i] = {value};")


def tensor_state_pass(out: Section, step_read: str, count: int) -> str:
    """The serial pass that updates 0-d state (after the step counts): per tensor, keep the old
    values in ``held``, compute the scalars, store the new values. Empty without 0-d state."""
    if not count:
        return "    double* held = NULL;"
    lines = [f"    double* held = (double*)malloc(sizeof(double) * (size_t)({count} * nt));",
             "    if (!held) { free(start); return 1; }",
             "    {",
             *out.hp_locals,
             "    for (int64_t t = 0; t < nt; ++t) {  /* 0-d state, once per tensor */",
             step_read.rstrip("\n"),
             *out.tensor_loads, *out.scalars, *out.tensor_stores,
             "    }",
             "    }"]
    return "\n".join(lines)


def step_count(roles: Roles) -> tuple[str, str]:
    """The kernel's ``state['step'] += 1`` pass (once per tensor, before the threads start; none
    where the engine advanced the counts) and the lines that read a tensor's new count; empty when
    the optimizer keeps no step count."""
    if roles.step_dtype is None:
        return "", ""
    role, ctype = len(roles.names) - 1, CTYPE[roles.step_dtype]
    increment = "" if not roles.advances_steps else f"""
    for (int64_t t = 0; t < nt; ++t) {{  /* state['step'] += 1, once per tensor */
        {ctype}* s = ({ctype}*)ptrs[{role} * nt + t];
        *s = *s + ({ctype})1;
    }}"""
    read = (f"        const {ctype} step_value = *({ctype}*)ptrs[{role} * nt + t];\n"
            f"        const double step = (double)step_value;\n")
    return increment, read


KERNEL = string.Template(r"""/* optimlab fused step, generated from a traced Transform.update (codegen v$version).
$description
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
$helpers
static void run_range(int64_t nt, void* const* ptrs, const int64_t* numel, const int64_t* start,
                      const double* hp, const double* held, int64_t begin, int64_t end)
{
$hp_locals
    /* First tensor touching [begin, end): binary search over the prefix sums of sizes. */
    int64_t low = 0, high = nt - 1;
    while (low < high) {
        int64_t mid = (low + high + 1) / 2;
        if (start[mid] <= begin) low = mid; else high = mid - 1;
    }
    for (int64_t t = low; t < nt && start[t] < end; ++t) {
        int64_t lo = begin > start[t] ? begin - start[t] : 0;
        int64_t hi = (end < start[t] + numel[t] ? end : start[t] + numel[t]) - start[t];
        if (hi <= lo) continue;
        const int64_t n = hi - lo;
$step_read$held
$scalars
$pointers
        for (int64_t i = 0; i < n; ++i) {
$loads
$vectors
$stores
        }
    }
}

int optimlab_step(int64_t nt, void* const* ptrs, const int64_t* numel, const double* hp, int64_t nthreads)
{
    if (nt <= 0) return 0;
    int64_t* start = (int64_t*)malloc(sizeof(int64_t) * (size_t)(nt + 1));
    if (!start) return 1;
    start[0] = 0;
    for (int64_t t = 0; t < nt; ++t) start[t + 1] = start[t] + numel[t];
    const int64_t total = start[nt];$step_increment
$tensor_state_pass
#ifdef _OPENMP
    if (nthreads > 1 && total >= $parallel_min) {
        #pragma omp parallel num_threads((int)nthreads)
        {
            const int64_t k = omp_get_thread_num(), parts = omp_get_num_threads();
            run_range(nt, ptrs, numel, start, hp, held, total * k / parts, total * (k + 1) / parts);
        }
        free(held);
        free(start);
        return 0;
    }
#endif
    run_range(nt, ptrs, numel, start, hp, held, 0, total);
    free(held);
    free(start);
    return 0;
}
""")


def generate(program: Program, roles: Roles) -> str:
    """C source of ``optimlab_step`` for a traced program."""
    out = Section()
    inputs(program, roles, out)
    for index, node in enumerate(program.nodes):
        if node.op == "const":
            out.names[index] = None  # a literal, cast where used
        elif node.op != "input":
            operation(program.nodes, index, out)
    stores(program, roles, out)
    increment, read = step_count(roles)
    tensor_pass = tensor_state_pass(out, read, len(roles.tensor_state_keys))
    return KERNEL.substitute(
        version=CODEGEN_VERSION, helpers=HELPERS, parallel_min=PARALLEL_MIN_ELEMENTS,
        description="\n".join(" * " + line for line in program.describe().splitlines()),
        step_read=read, step_increment=increment, tensor_state_pass=tensor_pass, held="\n".join(out.held),
        hp_locals="\n".join(out.hp_locals),
        scalars="\n".join(out.scalars), pointers="\n".join(out.pointers),
        loads="\n".join(out.loads), vectors="\n".join(out.vectors), stores="\n".join(out.stores))
