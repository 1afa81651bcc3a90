"""Report: what the lab shows of its results.

The sweep report, an HTML page with its tables (:mod:`.sweep_report`), its plots (:mod:`.plots`)
and its plain-language recommendation (:mod:`.recommend`); the learning-rate range test
(:mod:`.lr_find`) and optimizer paths on 2-D functions (:mod:`.trajectories`), which train and
plot; the colours every plot shares (:mod:`.style`). The top of the lab: nothing in it is
imported by the other parts.
"""
