r"""Runs one mode of jaxvae on a model config.

  python main.py --config=configs/betavae.py --mode=variations --workdir=out/betavae
  python main.py --config=configs/betavae.py --mode=reconstruct --config.input='faces/*.jpg'
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jaxvae import options, outputs, schedule  # No jax: XLA flags must be set before jax starts.

_CONFIG = config_flags.DEFINE_config_file("config", None, "Model config file.", lock_config=True)
_MODE = flags.DEFINE_enum("mode", "reconstruct", list(options.MODES),
                          "What to run (jaxvae/modes/).")
_WORKDIR = flags.DEFINE_string("workdir", "out", "Where outputs are written.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace outputs of an earlier run.")
flags.mark_flags_as_required(["config"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)  # Orbax logs every step at INFO.
  try:
    schedule.enable_compilation_cache()
    from jaxvae import modes  # pylint: disable=import-outside-toplevel
    run = options.validate(_CONFIG.value, _MODE.value)  # Every field, before any work.
    outputs.check_workdir(_WORKDIR.value)
    run = _ported(run)
    modes.get(run.mode)(run, _WORKDIR.value, _OVERWRITE.value)
  except outputs.Interrupted as e:  # A long run: says what it kept and how to resume.
    print(e, file=sys.stderr)
    return 130
  except KeyboardInterrupt as e:
    print("interrupted" + (" after the outputs were written" if e.args == ("after commit",)
                           else ", nothing written"), file=sys.stderr)
    return 130
  except (ValueError, OSError) as e:  # Bad input or files: a message, not a traceback.
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


def _ported(run):
  """The run with published checkpoint names replaced by their ported directories (not for
  --mode=train, which reads config.train.init_from, not config.checkpoint)."""
  import dataclasses  # pylint: disable=import-outside-toplevel
  from jaxvae import weights  # pylint: disable=import-outside-toplevel
  if run.mode == "train":
    return run
  port = lambda spec: weights.ensure_ported(spec, log=print) if spec else spec
  run = dataclasses.replace(run, common=dataclasses.replace(
      run.common, checkpoint=port(run.common.checkpoint)))
  if isinstance(run.section, options.Evaluate):
    run = dataclasses.replace(run, section=dataclasses.replace(
        run.section, checkpoints=tuple(map(port, run.section.checkpoints))))
  return run


def parse_flags(argv):
  """absl's parser, with config override mistakes reported as one line instead of a traceback."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(f"error: {e}\nPass --helpshort to see the flags.")
  except (AttributeError, KeyError, TypeError, ValueError) as e:  # From a --config.x=y override.
    detail = str(e.args[0] if e.args else e).strip("'\"").replace("\\n", " ").replace("\n", " ").replace("\\'", "'")
    sys.exit(f"error: bad config override: {detail}")


if __name__ == "__main__":
  schedule.configure_xla_flags()  # The CPU schedule (jaxvae/schedule.py), unless the user set it.
  app.run(main, flags_parser=parse_flags)
