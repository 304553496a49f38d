"""Ready-made tasks: real data splits, standard models, losses and metrics."""
