"""Experiment commands on top of the environment, trainers and baselines: reproduction of the
paper's figures (``reproduce``), ablations (``ablate``), seeds (``seeds``), sweeps (``sweep``).
Nothing in the environment imports from here."""
