"""Trains, evaluates or predicts with a bilstm_jax model (see `bilstm_jax/cli.py`).

  python train.py --config configs/default.py --workdir runs/default
  python train.py --workdir runs/default --mode=evaluate
  python train.py --workdir runs/default --mode=predict --input=seqs.jsonl --output=p.jsonl

Training resumes from the newest checkpoint in --workdir when started again.
"""

from absl import flags

from bilstm_jax import cli

flags.adopt_module_key_flags(cli)  # --help lists the command's flags

if __name__ == '__main__':
  cli.main()
