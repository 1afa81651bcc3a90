"""Why a fast path declines a transform (the engine then keeps the eager path for it)."""


class Unsupported(Exception):
    """The transform does something this fast path cannot express; use the eager path."""


class NeedsEagerStep(Exception):
    """The transform adds state on this step (e.g. a momentum buffer on the first step)."""


class EagerByDesign(Unsupported):
    """The transform can be a kernel, but not with torch's numbers for these tensors (a
    documented case: half-precision math reading 0-d state of another dtype); the eager path
    takes them without a warning."""
