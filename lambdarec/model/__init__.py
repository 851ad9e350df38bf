"""The snapshot model math every layer shares: factors and solver terms, fold-in, scoring, top-K selection.

:mod:`lambdarec.model.factors` (what training produces), :mod:`lambdarec.model.foldin` (the speed layer's
closed-form user solve), :mod:`lambdarec.model.topk` (exact top-K selection over a score matrix),
:mod:`lambdarec.model.scoring` (score queries against item factors, excluding seen items),
:mod:`lambdarec.model.snapshot` (the published snapshot as readers load it). Nothing heavy is imported here.
"""
