"""The batch layer: read the interaction log, train embeddings, precompute candidates, publish a snapshot.

Input side: :mod:`batch_layer.interactions` (read, matrix, holdout), :mod:`batch_layer.datasets` (public
dataset import and fetch), :mod:`batch_layer.synth` (synthetic logs), :mod:`batch_layer.cli_datasets`
(``lambdarec datasets``). Nothing heavy is imported here.
"""
