"""--mode=train: training or fine-tuning by the original's recipe (jaxvae/train), resumable."""

from jaxvae import options, outputs
from jaxvae.modes import common


def train(run: options.Run, workdir: str, overwrite: bool = False) -> dict:
  """Trains into `workdir` (checkpoints/, export/, tensorboard/, images/, summary.json); a workdir
  holding this run's checkpoints resumes from the latest, up to config.train.steps."""
  from jaxvae.train import loop  # pylint: disable=import-outside-toplevel  (imports optax, orbax)
  if overwrite:
    raise options.ConfigError("--overwrite does not apply to --mode=train: a workdir with this "
                              "run's checkpoints resumes; use a new --workdir to start over")
  outputs.check_workdir(workdir)
  result = loop.train_and_evaluate(run.section, workdir, print_fn=common.log)
  common.log(f"train: step {result.step}; export {result.export_dir} (a checkpoint every mode "
             "takes as --config.checkpoint)")
  return outputs.read_json(f"{workdir}/{outputs.SUMMARY}")["train"]
