"""Independent float64 references for optimlab's optimizers, written from the papers.

Each reference is a plain function over numpy float64 arrays with the paper's elementwise
formulas: it shares no code with optimlab or torch.optim, and is deliberately not organised
like optimlab's transforms. Every function has the same calling convention::

    iterates = algorithm(x0, grad, steps, **hyperparameters)

``grad(t, x)`` returns the gradient of the objective at ``x`` for step ``t = 1, 2, ...``
(a fixed random sequence ignores ``x``; a deterministic function does not), and ``iterates``
is ``[x_0, x_1, ..., x_steps]``.
"""
