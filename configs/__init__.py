"""The shipped configs: `--config=NAME` (or a path) for train.py and `bilstm-jax`.

The wheel installs them as the package `bilstm_jax.configs` (an editable install maps that
name to this folder), and they import one another under that name, so a config loads the
same from a checkout or from the installed command anywhere.
"""
