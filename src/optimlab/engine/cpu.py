"""The CPU fast path: a traced update compiled to one C kernel that steps a whole group.

Why a generated C kernel rather than ``torch.compile`` (measurements in docs/performance.md):
an optimizer step is ~20 flops per 20-28 bytes, so it is memory-bound only if every tensor is
read and written once, the per-tensor scalars (``1 - beta2 ** step``) are computed once per
tensor rather than once per element, and the Python cost per tensor stays well under a
microsecond. The kernel here

* takes *all* tensors of a group at once (arrays of data pointers, like torch's fused
  multi-tensor kernels), reading gradients where autograd left them: no flattening, no copies,
  nothing about the user's parameters changes;
* splits the group's elements evenly over threads (OpenMP, sharing torch's runtime) and runs the
  traced program once per element, loading each input once and storing each output once;
* increments each parameter's ``state['step']`` itself and derives the scalars from it;
* reads hyperparameters as runtime float64 arguments, so no value change ever recompiles.

Kernels are plain C99 (no torch headers): compiling one takes a fraction of a second, and the
shared object is kept in a persistent cache keyed by the source, compiler flags and CPU, so a
later process only loads it.

Semantics follow ATen's CPU kernels for each operation (e.g. ``lerp`` as a fused multiply-add
around the nearer end, ``maximum`` propagating NaN), computing each operation in its result
dtype and casting scalar operands to it, as torch does for Python numbers and 0-d tensors;
scalar-only math is double precision, as the eager path's Python floats are. One deliberate
difference: a tensor divided by a per-tensor scalar is multiplied by the scalar's reciprocal
(:data:`RECIPROCAL_DIVISION`), within a unit in the last place of true division.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from optimlab.core import Transform
from optimlab.engine.errors import NeedsEagerStep, Unsupported
from optimlab.engine.expressions import COMPARISONS, shared_expression
from optimlab.engine.trace import Node, Program, trace

#: Bump when the generated code changes meaning (old cached kernels are then ignored).
CODEGEN_VERSION = 4

#: Divide a tensor by a per-tensor scalar (Adam's bias corrections) as a product with the
#: scalar's reciprocal: within one unit in the last place of torch's true division, and one
#: fewer vector division per element, which is what bounds the step while the data sit in cache
#: (docs/performance.md). OPTIMLAB_RECIPROCAL_DIVISION=0 keeps true division.
RECIPROCAL_DIVISION = os.environ.get("OPTIMLAB_RECIPROCAL_DIVISION", "1") != "0"

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


class BuildError(RuntimeError):
    """No usable C compiler, or the kernel did not compile or load."""


class NoCompiler(BuildError):
    """There is no C compiler to build a kernel with."""


# -- code generation ---------------------------------------------------------------------------
def _literal(value: float | bool, ctype: str) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if value != value:
        return f"(({ctype})NAN)"
    if value in (float("inf"), float("-inf")):
        return f"(({ctype})({'-' if value < 0 else ''}INFINITY))"
    return f"(({ctype}){float(value).hex()})"


def comparison_dtype(nodes: list[Node], args: tuple[int, ...]) -> torch.dtype:
    """The dtype torch computes a comparison in: vectors win over 0-d values, which win over numbers."""
    for tier in (lambda n: n.vector and n.dtype is not None, lambda n: not n.vector and n.dtype is not None):
        dtypes = [nodes[i].dtype for i in args if tier(nodes[i])]
        if dtypes:
            result = dtypes[0]
            for dtype in dtypes[1:]:
                result = torch.promote_types(result, dtype)
            return result
    return torch.float64


def _expression(node: Node, operands: list[str], ctype: str, vector: bool) -> str:
    """C expression for one operation on operands already cast to ``ctype``."""
    f = SUFFIX[ctype]
    a = operands
    op = node.op
    simple = {
        "add_alpha": lambda: f"fma{f}({a[2]}, {a[1]}, {a[0]})",
        "sub_alpha": lambda: f"fma{f}(-{a[2]}, {a[1]}, {a[0]})",
        "div": lambda: f"({a[0]} / {a[1]})",
        "sqrt": lambda: f"sqrt{f}({a[0]})",
        "rsqrt": lambda: f"(({ctype})1 / sqrt{f}({a[0]}))",
        "reciprocal": lambda: f"(({ctype})1 / {a[0]})",
        "abs": lambda: f"fabs{f}({a[0]})",
        "sign": lambda: f"(({ctype})((({ctype})0 < {a[0]}) - ({a[0]} < ({ctype})0)))",
        "exp": lambda: f"exp{f}({a[0]})",
        "log": lambda: f"log{f}({a[0]})",
        "lerp": lambda: f"lerp_{ctype}({a[0]}, {a[1]}, {a[2]})",
        "maximum": lambda: f"maximum_{ctype}({a[0]}, {a[1]})",
        "minimum": lambda: f"minimum_{ctype}({a[0]}, {a[1]})",
        "clamp": lambda: f"clamp_{ctype}({a[0]}, {a[1]}, {a[2]})",
        "clamp_min": lambda: f"clamp_min_{ctype}({a[0]}, {a[1]})",
        "clamp_max": lambda: f"clamp_max_{ctype}({a[0]}, {a[1]})",
        "addcdiv": lambda: f"({a[0]} + {a[3]} * {a[1]} / {a[2]})",
        "where": lambda: f"({a[0]} ? {a[1]} : {a[2]})",
    }
    shared = shared_expression(op, a)
    if shared is not None:
        return shared
    if op == "pow":
        return None  # handled by the caller, which knows whether the exponent is a constant
    if op not in simple:
        raise Unsupported(f"no C code for operation {op!r}")
    return simple[op]()


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

/* ATen's CPU lerp: a fused multiply-add around the nearer end. */
static inline float lerp_float(float a, float b, float w) {
    return fabsf(w) < 0.5f ? fmaf(w, b - a, a) : fmaf(w - 1.0f, b - a, b); }
static inline double lerp_double(double a, double b, double w) {
    return fabs(w) < 0.5 ? fma(w, b - a, a) : fma(w - 1.0, b - a, b); }
/* torch.maximum / minimum / clamp: NaN in, NaN out; otherwise std::max / std::min. */
static inline float maximum_float(float a, float b) { return (a != a) ? a : (b != b) ? b : (a < b) ? b : a; }
static inline double maximum_double(double a, double b) { return (a != a) ? a : (b != b) ? b : (a < b) ? b : a; }
static inline float minimum_float(float a, float b) { return (a != a) ? a : (b != b) ? b : (b < a) ? b : a; }
static inline double minimum_double(double a, double b) { return (a != a) ? a : (b != b) ? b : (b < a) ? b : a; }
static inline float clamp_min_float(float a, float lo) { return (a != a) ? a : (a < lo ? lo : a); }
static inline double clamp_min_double(double a, double lo) { return (a != a) ? a : (a < lo ? lo : a); }
static inline float clamp_max_float(float a, float hi) { return (a != a) ? a : (hi < a ? hi : a); }
static inline double clamp_max_double(double a, double hi) { return (a != a) ? a : (hi < a ? hi : a); }
static inline float clamp_float(float a, float lo, float hi) { return clamp_max_float(clamp_min_float(a, lo), hi); }
static inline double clamp_double(double a, double lo, double hi) { return clamp_max_double(clamp_min_double(a, lo), hi); }
"""


def _pow(node_base: Node, exponent: Node, a: list[str], ctype: str, vector: bool) -> str:
    """ATen's tensor ** number special-cases a few exponents; scalar math follows Python (pow)."""
    f = SUFFIX[ctype]
    if vector and exponent.op == "const" and not exponent.vector:
        special = {2.0: f"({a[0]} * {a[0]})", 3.0: f"({a[0]} * {a[0]} * {a[0]})", 0.5: f"sqrt{f}({a[0]})",
                   -0.5: f"(({ctype})1 / sqrt{f}({a[0]}))", -1.0: f"(({ctype})1 / {a[0]})",
                   -2.0: f"(({ctype})1 / ({a[0]} * {a[0]}))", 1.0: a[0]}
        if float(exponent.value) in special:
            return special[float(exponent.value)]
    return f"pow{f}({a[0]}, {a[1]})"


class Roles:
    """Where each tensor of a parameter sits in the pointer array, and its C type."""

    def __init__(self, program: Program, param_dtype: torch.dtype, counts_steps: bool) -> None:
        self.state_keys = sorted(k for (kind, *rest) in program.inputs for k in rest if kind == "state")
        self.names = ["param", "grad"] + [f"state:{k}" for k in self.state_keys]
        self.dtypes = [param_dtype, param_dtype] + [program.state_dtypes[k] for k in self.state_keys]
        self.step_dtype = program.state_dtypes.get("step") if counts_steps else None
        if counts_steps:
            self.names.append("step")
            self.dtypes.append(self.step_dtype)

    def index(self, key: tuple) -> int:
        if key[0] == "state":
            return 2 + self.state_keys.index(key[1])
        return {"param": 0, "grad": 1}[key[0]]


def generate(program: Program, roles: Roles) -> str:
    """C source of ``optimlab_step`` for a traced program."""
    nodes = program.nodes
    step_role = len(roles.names) - 1 if roles.step_dtype is not None else None

    # Scalar values are computed once per tensor (per thread), vector values once per element.
    scalar_lines: list[str] = []
    vector_lines: list[str] = []
    loads: list[str] = []
    pointers: list[str] = []
    used = set(i for n in nodes for i in n.args) | {i for _, i in program.writes}
    names: dict[int, str] = {}
    for key, index in program.inputs.items():
        if key[0] in ("param", "grad", "state"):
            role = roles.index(key)
            dtype = roles.dtypes[role]
            storage, ctype = STORAGE[dtype], CTYPE[dtype]
            if index in used or any(k == key for k, _ in program.writes):
                pointers.append(f"        {storage}* restrict R{role} = ({storage}*)ptrs[{role} * nt + t] + lo;")
            if index in used:
                load = f"{LOAD[dtype]}(R{role}[i])" if dtype in LOAD else f"R{role}[i]"
                loads.append(f"            const {ctype} v{index} = {load};")
            names[index] = f"v{index}"
        elif key[0] == "step":
            names[index] = "step"
        elif key[0] == "step_tensor":
            names[index] = "step_value"
        elif key[0] == "hp":
            names[index] = f"hp[{key[1]}]"

    for index, node in enumerate(nodes):
        if node.op == "input":
            continue
        if node.op == "const":
            names[index] = None  # literal, cast where used
            continue
        ctype = CTYPE[node.dtype]
        compute = ctype
        if node.op in COMPARISONS:
            compute = CTYPE[comparison_dtype(nodes, node.args)]
        elif node.op == "where":
            compute = ctype
        operands = []
        for position, i in enumerate(node.args):
            arg = nodes[i]
            want = "int" if node.op == "where" and position == 0 else compute
            if arg.op == "const":
                operands.append(_literal(arg.value, want))
            elif CTYPE[arg.dtype] != want:
                operands.append(f"(({want}){names[i]})")  # torch casts operands to the op's dtype
            else:
                operands.append(names[i])
        divisor = nodes[node.args[1]] if node.op == "div" else None
        if node.op == "pow":
            text = _pow(nodes[node.args[0]], nodes[node.args[1]], operands, compute, node.vector)
        elif RECIPROCAL_DIVISION and divisor is not None and node.vector and not divisor.vector:
            # x / s with s the same for the whole tensor: one division per tensor (in double,
            # then rounded once), then products.
            raw = _literal(divisor.value, "double") if divisor.op == "const" else f"(double){names[node.args[1]]}"
            scalar_lines.append(f"        const {compute} r{index} = ({compute})(1.0 / {raw});")
            text = f"({operands[0]} * r{index})"
        else:
            text = _expression(node, operands, compute, node.vector)
        if compute != ctype:
            text = f"(({ctype}){text})"
        if node.dtype in ROUND:
            text = f"{ROUND[node.dtype]}({text})"
        if node.vector:
            vector_lines.append(f"            const {ctype} v{index} = {text};")
            names[index] = f"v{index}"
        else:
            scalar_lines.append(f"        const {ctype} s{index} = {text};")
            names[index] = f"s{index}"

    stores = []
    for key, index in program.writes:
        role = roles.index(key)
        value = names[index]
        if roles.dtypes[role] in STORE:
            value = f"{STORE[roles.dtypes[role]]}({value})"
        stores.append(f"            R{role}[i] = {value};")

    step_ctype = CTYPE[roles.step_dtype] if roles.step_dtype is not None else None
    step_prepass = ""
    step_read = ""
    if step_role is not None:
        step_prepass = f"""
    for (int64_t t = 0; t < nt; ++t) {{  /* state['step'] += 1, once per tensor */
        {step_ctype}* s = ({step_ctype}*)ptrs[{step_role} * nt + t];
        *s = *s + ({step_ctype})1;
    }}"""
        step_read = (f"        const {step_ctype} step_value = *({step_ctype}*)ptrs[{step_role} * nt + t];\n"
                     f"        const double step = (double)step_value;\n")

    return f"""/* optimlab fused step, generated from a traced Transform.update (codegen v{CODEGEN_VERSION}).
{chr(10).join(' * ' + line for line in program.describe().splitlines())}
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
{HELPERS}
static void run_range(int64_t nt, void* const* ptrs, const int64_t* numel, const int64_t* start,
                      const double* hp, int64_t begin, int64_t end)
{{
    /* First tensor touching [begin, end): binary search over the prefix sums of sizes. */
    int64_t low = 0, high = nt - 1;
    while (low < high) {{
        int64_t mid = (low + high + 1) / 2;
        if (start[mid] <= begin) low = mid; else high = mid - 1;
    }}
    for (int64_t t = low; t < nt && start[t] < end; ++t) {{
        int64_t lo = begin > start[t] ? begin - start[t] : 0;
        int64_t hi = (end < start[t] + numel[t] ? end : start[t] + numel[t]) - start[t];
        if (hi <= lo) continue;
        const int64_t n = hi - lo;
{step_read}{chr(10).join(scalar_lines)}
{chr(10).join(pointers)}
        for (int64_t i = 0; i < n; ++i) {{
{chr(10).join(loads)}
{chr(10).join(vector_lines)}
{chr(10).join(stores)}
        }}
    }}
}}

int optimlab_step(int64_t nt, void* const* ptrs, const int64_t* numel, const double* hp, int64_t nthreads)
{{
    if (nt <= 0) return 0;
    int64_t* start = (int64_t*)malloc(sizeof(int64_t) * (size_t)(nt + 1));
    if (!start) return 1;
    start[0] = 0;
    for (int64_t t = 0; t < nt; ++t) start[t + 1] = start[t] + numel[t];
    const int64_t total = start[nt];{step_prepass}
#ifdef _OPENMP
    if (nthreads > 1 && total >= {PARALLEL_MIN_ELEMENTS}) {{
        #pragma omp parallel num_threads((int)nthreads)
        {{
            const int64_t k = omp_get_thread_num(), parts = omp_get_num_threads();
            run_range(nt, ptrs, numel, start, hp, total * k / parts, total * (k + 1) / parts);
        }}
        free(start);
        return 0;
    }}
#endif
    run_range(nt, ptrs, numel, start, hp, 0, total);
    free(start);
    return 0;
}}
"""


# -- building and loading ----------------------------------------------------------------------
def cache_dir() -> Path:
    """Where compiled kernels are kept: $OPTIMLAB_CACHE_DIR, else the user's cache directory."""
    root = os.environ.get("OPTIMLAB_CACHE_DIR")
    if root:
        return Path(root) / "kernels"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "optimlab" / "kernels"


def _cpu_fingerprint() -> str:
    """Identifies the instruction set the kernels are built for (-march=native)."""
    text = f"{platform.system()} {platform.machine()} {platform.processor()}"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith(("model name", "flags", "Features")):
                    text += line
                if line.strip() == "":
                    break  # the first processor describes them all
    except OSError:
        pass
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def find_compiler() -> str:
    """$CC, else cc, gcc or clang from PATH."""
    if os.environ.get("CC"):
        path = shutil.which(os.environ["CC"])
        if path is None:
            raise NoCompiler(f"the C compiler CC={os.environ['CC']!r} was not found")
        return path
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return path
    raise NoCompiler("no C compiler found (install gcc or clang, or set CC)")


#: Flag sets tried in order: the first that compiles is used (OpenMP and -march=native are
#: not available everywhere). No -ffast-math: NaN and infinity behave as in torch.
FLAG_SETS = (
    ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-ffp-contract=off"],
    ["-O3", "-fopenmp", "-fno-math-errno", "-ffp-contract=off"],
    ["-O3", "-fno-math-errno", "-ffp-contract=off"],
)


class Kernel:
    """A loaded ``optimlab_step``; call with the arrays the engine builds."""

    def __init__(self, path: Path, source: str) -> None:
        self.path = path
        self.source = source
        self.library = ctypes.CDLL(str(path))
        function = self.library.optimlab_step
        function.restype = ctypes.c_int
        function.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        self.function = function

    def __call__(self, nt: int, ptrs: int, numel: int, hp: int, nthreads: int) -> None:
        if self.function(nt, ptrs, numel, hp, nthreads) != 0:
            raise MemoryError("optimlab fused step: out of memory")


_lock = threading.Lock()
_loaded: dict[str, Kernel] = {}
_fingerprint: str | None = None


def build(source: str) -> Kernel:
    """Load the kernel for ``source`` from the cache, compiling it first if it is not there.

    The cache key is the source, the flags and the CPU (kernels use -march=native), not the
    compiler: a warm cache needs no compiler at all.
    """
    global _fingerprint
    with _lock:
        if source in _loaded:
            return _loaded[source]
        if _fingerprint is None:
            _fingerprint = _cpu_fingerprint()
        directory = cache_dir()
        errors = []
        for flags in FLAG_SETS:
            key = hashlib.sha256("\0".join([source, *flags, _fingerprint, sys.platform]).encode())
            path = directory / f"step-{key.hexdigest()[:32]}.so"
            try:
                if not path.exists():
                    _compile(find_compiler(), flags, source, path)
                try:
                    kernel = Kernel(path, source)
                except (OSError, AttributeError):  # a damaged cache entry: build it again, once
                    path.unlink(missing_ok=True)
                    _compile(find_compiler(), flags, source, path)
                    kernel = Kernel(path, source)
            except NoCompiler as error:
                errors.append(str(error))
                break
            except (OSError, BuildError) as error:
                errors.append(str(error))
                continue
            _loaded[source] = kernel
            return kernel
        raise BuildError("; ".join(dict.fromkeys(errors)))


def _compile(compiler: str, flags: list[str], source: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".build-") as work:
        c_file = Path(work) / "step.c"
        c_file.write_text(source)
        out = Path(work) / "step.so"
        command = [compiler, *flags, "-std=c99", "-fPIC", "-shared", str(c_file), "-o", str(out), "-lm"]
        run_compiler(command, out, path, timeout=120)


def run_compiler(command: list[str], out: Path, path: Path, timeout: float) -> None:
    """Run a compiler that writes ``out``, then move that to ``path``; BuildError with the
    compiler's message if it fails."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BuildError(f"{' '.join(command)}: {error}") from error
    if done.returncode != 0:
        raise BuildError(f"{' '.join(command)}:\n{done.stderr[-3000:]}")
    os.replace(out, path)  # atomic: concurrent processes never see half a file



STEP_COUNTER = r"""/* optimlab step counter: adds io[0] to each of nt 0-d step counts of type STEP and
   writes their new values to io[0..nt) (the step kernels' entry point and arguments, so that it
   is built and cached as they are). */
#include <stdint.h>
int optimlab_step(int64_t nt, void* const* ptrs, const int64_t* unused, const double* io_, int64_t nthreads)
{
    double* io = (double*)io_;
    const STEP delta = (STEP)io[0];
    for (int64_t t = 0; t < nt; ++t) {
        STEP* count = (STEP*)ptrs[t];
        *count = *count + delta;
        io[t] = (double)*count;
    }
    return 0;
}
"""


def step_counter(dtype: torch.dtype) -> Kernel:
    """A compiled loop that moves many CPU step counts (``state['step']``, float32 or float64)
    by one and reads them back in one call: a path whose kernel runs elsewhere (the GPU) still
    keeps torch.optim's CPU step counts, and 0-d tensor ops cost microseconds each."""
    return build(STEP_COUNTER.replace("STEP", CTYPE[dtype]))


class Compiled:
    """A kernel and the layout of the pointer array it expects."""

    def __init__(self, kernel: Kernel, roles: Roles) -> None:
        self.kernel = kernel
        self.roles = roles


#: transform -> {(hp structure, signature, counts_steps): Compiled or the reason there is none}
_kernels: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def kernel_for(transform: Transform, hyperparams: Mapping[str, Any], structure: tuple, sig: tuple,
               state: Mapping[str, Any], counts_steps: bool) -> Compiled | Exception:
    """The kernel for a transform on parameters of one signature (traced once, built once), or
    the reason there is none (:class:`Unsupported`, :class:`NeedsEagerStep`, :class:`BuildError`)."""
    return traced_kernel(_kernels, transform, hyperparams, (structure, sig, counts_steps), state,
                         lambda program, roles: Compiled(build(generate(program, roles)), roles))


def traced_kernel(kernels: weakref.WeakKeyDictionary, transform: Transform, hyperparams: Mapping[str, Any],
                  key: tuple, state: Mapping[str, Any], make: Any) -> Any:
    """``make(program, roles)`` for the transform's traced program, once per ``key`` (hyperparameter
    structure, signature, counts_steps) and transform, kept in ``kernels``; or the reason there
    is none (:class:`Unsupported`, :class:`NeedsEagerStep`, :class:`BuildError`), kept too."""
    cache = kernels.get(transform)
    if cache is None:
        cache = kernels[transform] = {}
    found = cache.get(key)
    if found is None:
        _, sig, counts_steps = key
        try:
            program = trace(transform, hyperparams, sig[0], state, counts_steps)
            found = make(program, Roles(program, sig[0], counts_steps))
        except (Unsupported, NeedsEagerStep, BuildError) as reason:
            found = reason
        except Exception as error:  # noqa: BLE001 - never let building a kernel stop training
            found = BuildError(f"{type(error).__name__}: {error}")
        cache[key] = found
    return found
