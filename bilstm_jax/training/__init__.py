"""Training: the pure steps, the loop around them, checkpoints, workdirs and inference.

steps.py         `TrainState` and the pure train / eval / predict steps
program.py       `Program`: what the loop runs for one model
loop.py          logging, evaluation, saving, resuming, early stopping
optim.py         optimisers and learning-rate schedules
checkpoint.py    the checkpoint policy (orbax glue in orbax_io.py, checksums in integrity.py)
workdir.py       a run's files, its lock and config compatibility
monitor.py       metrics.jsonl, TensorBoard and the progress bar
export.py        the inference function as serialized StableHLO
inference.py     `load` and `Trained`: a trained workdir from Python
saved_config.py  the config evaluate and predict load by default: the run's config.json
"""
