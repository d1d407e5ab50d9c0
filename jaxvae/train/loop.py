"""train_and_evaluate: the training loop, from scratch or fine-tuning, resumable, data-parallel."""

import os
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae import checkpoint, models, outputs, weights
from jaxvae.train import (checkpoints, data, evaluation, init, logs, optim, state as state_lib,
                          step)
from jaxvae.train.options import TrainOptions

Hook = Callable[[int, state_lib.TrainState], None]
INTERRUPTED_EXIT_CODE = 130


class TrainingInterrupted(outputs.Interrupted):
  """SIGINT: the state was checkpointed and exported; main.py prints the message, exits 130."""

  code = INTERRUPTED_EXIT_CODE

  def __init__(self, message: str):
    super().__init__(message)
    self.message = message


class Result(NamedTuple):
  step: int
  state: state_lib.TrainState
  validation: dict  # the last validation metrics (empty if none ran)
  export_dir: str


def initial_model(options: TrainOptions, log: Callable[[str], None]) -> tuple[Any, Any, str]:
  """(model, variables, description): a checkpoint to fine-tune, or a new initialisation."""
  if options.init_from:
    ckpt_dir = weights.ensure_ported(options.init_from, log)
    loaded = checkpoint.load(ckpt_dir)
    if loaded.metadata["model"] != options.model:
      raise checkpoint.CheckpointError(
          f"init_from {options.init_from} holds a {loaded.metadata['model']!r} model, not "
          f"{options.model!r}")
    return loaded.model, loaded.variables, f"fine-tuning {options.init_from} ({ckpt_dir})"
  fields = {"latent_dim": options.latent_dim} if options.latent_dim else {}
  model = models.build(options.model, **fields)
  return (model, init.original_init(options.model, model, options.seed),
          f"from scratch ({init.FRAMEWORK[options.model]}'s initialisation, seed {options.seed})")


def _feature_loss(options: TrainOptions, log: Callable[[str], None]):
  if options.loss != "perceptual":
    return None
  from jaxvae.nets import vgg19  # pylint: disable=import-outside-toplevel

  variables = vgg19.load(options.perceptual_net, log)
  return lambda x, y: jnp.mean(vgg19.feature_perceptual_loss(variables, x, y))


def run_record(options: TrainOptions, model, data_size: int, batch_size: int) -> dict:
  """What fixes a run: resuming requires the same values (checkpoints.RESUME_KEYS)."""
  return {"model": options.model, "model_config": checkpoint.model_fields(model),
          "batch_size": batch_size, "seed": options.seed, "data_size": data_size,
          "shuffle": options.resolved_shuffle(), "flip": options.flip,
          "balance_attribute": options.balance_attribute, "loss": options.loss,
          "compute_dtype": options.compute_dtype, "init_from": options.init_from}


def _check_devices(batch_size: int, mesh) -> None:
  n = mesh.devices.size
  if batch_size % n or batch_size % jax.process_count():
    raise ValueError(f"batch_size {batch_size} must be a multiple of the {n} devices "
                     f"({jax.process_count()} process(es)) it is split over")


def train_and_evaluate(options: TrainOptions, workdir: str, *, hooks: Sequence[Hook] = (),
                       print_fn: Callable[[str], None] = print,
                       devices: Sequence[jax.Device] | None = None) -> Result:
  """Trains `options.model` as configured, writing everything under `workdir`.

  DIR/checkpoints (Orbax, resumable), DIR/export (loads like a ported checkpoint), DIR/tensorboard,
  DIR/images and DIR/summary.json["train"]. A workdir that already holds checkpoints of the same
  run resumes from the latest one (and continues to `options.steps`). SIGINT checkpoints the
  current step and raises TrainingInterrupted (exit code 130).
  """
  os.makedirs(workdir, exist_ok=True)
  recipe = options.recipe
  model, variables, origin = initial_model(options, print_fn)
  box = models.get_info(options.model).celeba_box
  train_src = data.open_source(options.data, "train", box, options.max_images,
                               options.num_threads)
  val_src = (data.open_source(options.validation_data or options.data, "validation", box, 0,
                              options.num_threads)
             if options.validation_data or isinstance(train_src, data.CelebASource)
             else train_src)
  batch_size = options.resolved_batch_size()
  mesh = step.make_mesh(devices)
  _check_devices(batch_size, mesh)
  groups = train_src.groups(options.balance_attribute) if options.balance_attribute else None
  sampler = data.Sampler(len(train_src), batch_size, options.seed, options.resolved_shuffle(),
                         options.flip, groups)
  config = step.StepConfig(model, options.loss_spec(_feature_loss(options, print_fn)),
                           recipe.eps_std, recipe.eps_shared, options.compute_dtype)
  tx = optim.make(recipe.optimizer, options.resolved_learning_rate())
  state = state_lib.create(variables, tx, options.seed)
  record = run_record(options, model, len(train_src), batch_size)
  plateau = (optim.Plateau(options.plateau_factor, options.plateau_patience,
                           options.plateau_min_delta) if options.uses_plateau() else None)
  manager = checkpoints.Manager(workdir, options.keep)
  writer = logs.Writer(workdir, options.steps, print_fn)
  try:
    if manager.latest_step() is not None:
      state, stored = manager.restore(state)
      checkpoints.check_resumable(stored, record, manager.directory)
      if plateau is not None:
        plateau.load_state_dict(stored.get("plateau", {}))
      writer.text(f"resuming from step {int(state.step)} ({manager.directory})")
    else:
      writer.text(f"training {options.model} {origin} on {train_src.description}; "
                  f"{len(mesh.devices.flat)} device(s), batch {batch_size}")
    loop = _Loop(options, config, tx, mesh, model, train_src, val_src, sampler, manager, writer,
                 record, plateau, hooks)
    return loop.run(step.put_replicated(mesh, state))
  finally:
    manager.close()
    writer.close()


class _Loop:
  """The step loop's pieces that share state (kept out of train_and_evaluate for length)."""

  def __init__(self, options, config, tx, mesh, model, train_src, val_src, sampler, manager,
               writer, record, plateau, hooks):
    self.o, self.config, self.tx, self.mesh, self.model = options, config, tx, mesh, model
    self.train_src, self.val_src, self.sampler = train_src, val_src, sampler
    self.manager, self.writer, self.record, self.plateau = manager, writer, record, plateau
    self.hooks = hooks
    self.evaluator = evaluation.Evaluator(config, mesh, val_src, options.eval_images,
                                          sampler.batch_size, options.seed)
    self.eval_every = options.eval_every or sampler.steps_per_epoch()
    self.validation: dict = {}

  def _record(self) -> dict:
    return {**self.record, "plateau": self.plateau.state_dict() if self.plateau else {}}

  def checkpoint(self, state) -> None:
    host = self.manager.save(state, self._record())
    self.manager.export(self.o.model, self.model, host,
                        {"source": "jaxvae train", "step": int(state.step),
                         "init_from": self.o.init_from, "data": self.o.data})

  def evaluate(self, state, s: int):
    self.validation = self.evaluator(state.variables, s)
    self.writer.evaluation(s, self.validation)
    if self.plateau is not None:
      monitor = self.validation["unweighted" if self.config.loss.kind == "pvae" else "loss"]
      lr = float(optim.learning_rate(state.opt_state))
      new_lr = self.plateau.update(monitor, lr)
      if new_lr != lr:
        self.writer.text(f"step {s}: plateau, learning rate {lr:.3g} -> {new_lr:.3g}")
        state = state.replace(opt_state=optim.with_learning_rate(state.opt_state, new_lr))
    return state

  def run(self, state) -> Result:
    start, stop = int(state.step), self.o.steps
    if start >= stop:
      self.writer.text(f"already at step {start} >= steps {stop}; nothing to train")
      if not os.path.isdir(self.manager.export_dir):
        self.checkpoint(state)
      return Result(start, state, {}, self.manager.export_dir)
    train_fn = step.jit_train_step(self.config, self.tx, self.mesh)
    lo, hi = self.model.input_range
    pending, t0 = [], time.perf_counter()
    with outputs.sigint_deferred(reraise=False) as interrupt:
      for batch in data.batches(self.train_src, self.sampler, start, stop,
                                process_index=jax.process_index(),
                                process_count=jax.process_count()):
        x = step.put_batch(self.mesh, (lo + (hi - lo) * batch.images).astype(np.float32))
        state, metrics = train_fn(state, x)
        pending.append(metrics)
        s = batch.step + 1
        if s % self.o.log_every == 0 or s == stop:
          host = jax.device_get(pending)
          means = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
          self.writer.progress(s, start, means, self.sampler.batch_size)
          pending = []
        t_aside = time.perf_counter()
        if s % self.eval_every == 0 or s == stop:
          state = self.evaluate(state, s)
        if s % self.o.image_every == 0 or s == stop:
          self.evaluator.write_images(self.writer, state.variables, s)
        saved = s % self.o.checkpoint_every == 0 or s == stop
        if saved:
          self.checkpoint(state)
        self.writer.exclude(time.perf_counter() - t_aside)
        for hook in self.hooks:
          hook(s, state)
        if interrupt and s < stop:
          if not saved:  # Orbax refuses a second checkpoint of the same step.
            self.checkpoint(state)
          self.manager.wait()
          message = (f"interrupted at step {s}: checkpoint {self.manager.directory}/{s} and "
                     f"export {self.manager.export_dir} are written; run the same command "
                     "again to resume")
          self.writer.text(message)
          raise TrainingInterrupted(message)
    self.manager.wait()
    elapsed = time.perf_counter() - t0
    if jax.process_index() == 0:
      outputs.update_summary(self.writer.workdir, "train", {
          "steps": stop, "resumed_from": start, "seconds": elapsed,
          "steps_per_second": (stop - start) / elapsed, "validation": self.validation,
          "export": self.manager.export_dir, "checkpoints": self.manager.directory})
    self.writer.text(f"done: step {stop} in {logs.duration(elapsed)}; export "
                     f"{self.manager.export_dir}")
    return Result(stop, state, self.validation, self.manager.export_dir)
