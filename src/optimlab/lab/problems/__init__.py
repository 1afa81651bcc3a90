"""Problems: what the optimizers are compared on (data + model + loss + metric + target + budget).

The :class:`~.problem.Problem` type and the classic problems (:mod:`.problem`), the fine-tuning
problems (:mod:`.finetune`) with their pretrained models (:mod:`.pretrained`), the 2-D test
functions (:mod:`.functions2d`), and every problem by name (:mod:`.catalog`). Built on
:mod:`optimlab.lab.training`.
"""
