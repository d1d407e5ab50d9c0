"""Training checkpoints (Orbax CheckpointManager, asynchronous) and the `export` directory.

`DIR/checkpoints/<step>/` holds the whole training state (parameters, optimizer state, BatchNorm
statistics, step, RNG key) and a JSON record (options that fix the run, data size, plateau
state). Writing is asynchronous: the state is copied to host memory, then written while the
step loop goes on. `DIR/export/` is the latest state's model variables written by
`jaxvae.checkpoint.save`, so it loads exactly like a ported checkpoint (`checkpoint.load`,
every mode's --config.checkpoint); it is rewritten in a background thread after each checkpoint.
"""

import concurrent.futures
import os

import flax.linen as nn
import jax
import numpy as np

from jaxvae import checkpoint
from jaxvae.train import state as state_lib

CHECKPOINTS_DIR = "checkpoints"
EXPORT_DIR = "export"
# Fields of the run record that must match for a resume to continue the same run.
RESUME_KEYS = ("model", "model_config", "batch_size", "seed", "data_size", "shuffle", "flip",
               "balance_attribute", "loss", "compute_dtype")


class ResumeError(ValueError):
  """The workdir holds a run that the current options cannot continue."""


class Manager:
  """Asynchronous Orbax checkpoints of the training state, plus the export directory."""

  def __init__(self, workdir: str, keep: int):
    import orbax.checkpoint as ocp  # Imported lazily: orbax is slow to import.

    self._ocp = ocp
    self.directory = os.path.abspath(os.path.join(workdir, CHECKPOINTS_DIR))
    self.export_dir = os.path.abspath(os.path.join(workdir, EXPORT_DIR))
    self.manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=True))
    self._exporter = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="export")
    self._export_job: concurrent.futures.Future | None = None

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, state: state_lib.TrainState, record: dict) -> dict:
    """Starts writing `state` (copied to host first, so the next step may reuse its buffers);
    returns that host copy (nested dicts of numpy arrays)."""
    step = int(state.step)
    host = jax.tree.map(np.asarray, jax.device_get(state_lib.to_nested(state)))
    self.manager.save(step, args=self._ocp.args.Composite(
        state=self._ocp.args.StandardSave(host), record=self._ocp.args.JsonSave(record)),
        force=True)
    return host

  def restore(self, like: state_lib.TrainState) -> tuple[state_lib.TrainState, dict]:
    """The latest state in the structure of `like`, and its run record."""
    step = self.latest_step()
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                            state_lib.to_nested(like))
    restored = self.manager.restore(step, args=self._ocp.args.Composite(
        state=self._ocp.args.StandardRestore(abstract), record=self._ocp.args.JsonRestore()))
    return state_lib.from_nested(restored["state"], like), dict(restored["record"])

  def export(self, model_name: str, model: nn.Module, host: dict, metadata: dict) -> None:
    """Rewrites DIR/export from `host` (what `save` returned) in the background (waits for the
    previous export)."""
    variables = {"params": host["params"]}
    if host.get("batch_stats"):
      variables["batch_stats"] = host["batch_stats"]
    self.wait_export()
    self._export_job = self._exporter.submit(
        checkpoint.save, self.export_dir, model_name, model, variables, metadata, True)

  def wait_export(self) -> None:
    if self._export_job is not None:
      self._export_job.result()
      self._export_job = None

  def wait(self) -> None:
    """Blocks until every checkpoint and the export are on disk."""
    self.manager.wait_until_finished()
    self.wait_export()

  def close(self) -> None:
    try:
      self.wait()
    finally:
      self.manager.close()
      self._exporter.shutdown()


def check_resumable(record: dict, current: dict, directory: str) -> None:
  """Raises ResumeError naming every field in which the stored run differs from `current`."""
  diffs = [f"{k}: stored {record.get(k)!r}, now {current.get(k)!r}" for k in RESUME_KEYS
           if record.get(k) != current.get(k)]
  if diffs:
    raise ResumeError(f"{directory} holds a training run that these options cannot continue "
                      "(use another workdir, or the same options):\n  " + "\n  ".join(diffs))

