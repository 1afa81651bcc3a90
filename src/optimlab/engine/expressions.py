"""How each program operation is written, for every code generator at once."""

from __future__ import annotations

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
