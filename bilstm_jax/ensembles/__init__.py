"""Ensembles: N models trained as one compiled program, a `jax.vmap` of the single-model step.

ensemble.py    stacked member states, the vmapped step, per-member hyperparameters
hparams.py     the members' hyperparameter ranges and their draw
population.py  an `ensemble` config block's training `Program`
trained.py     a loaded ensemble run (registered with `bilstm_jax.load`)
sweep.py       one population per model shape (hidden size, layers)
"""
