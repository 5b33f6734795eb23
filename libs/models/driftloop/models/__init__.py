"""Models: the flavors driftloop serves, the artifact store, training and baselines."""
