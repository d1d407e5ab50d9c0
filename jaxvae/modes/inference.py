"""The single-result inference modes: reconstruct, variations, sample, interpolate, edit.

Each writes `<mode>.png` (a labelled grid), `<mode>.npz` (float arrays) and its summary.json entry,
committed together (jaxvae.outputs.OutputSet).
"""

import time

import numpy as np

from jaxvae import directions, metrics, options, outputs
from jaxvae.modes import common


def reconstruct(run: options.Run, workdir: str, overwrite: bool = False) -> dict:
  """Deterministic reconstructions decode(mean): originals above reconstructions."""
  with outputs.OutputSet(workdir, "reconstruct", common.files("reconstruct"), overwrite) as out:
    ctx = common.setup(run)
    x = ctx.inputs.images
    recon = np.asarray(ctx.vae.reconstruct(x, run.common.postprocess))
    mse = common.mse(recon, x)
    out.write_png("reconstruct.png", outputs.grid(
        np.stack([x, recon]), [common.short(n) for n in ctx.inputs.names], ["input", "recon"],
        captions=[[""] * len(x), [f"mse {m:.4f}" for m in mse]]))
    out.write_npz("reconstruct.npz", names=np.array(ctx.inputs.names), inputs=x,
                  reconstructions=recon)
    summary = common.base_summary(ctx) | {"mse": mse.tolist(), "mean_mse": float(mse.mean())}
    out.commit(summary)
  common.log(f"wrote {workdir}/reconstruct.png, reconstruct.npz and summary.json")
  return summary


def _sampling_options(c: options.Common) -> dict:
  return {"temperature": c.temperature, "input_noise_std": c.input_noise_std,
          "sampling_rule": c.sampling_rule, "postprocess": c.postprocess}


def variations(run: options.Run, workdir: str, overwrite: bool = False) -> dict:
  """num_variations samples per input: one row per input (original, reconstruction, variations)."""
  c = run.common
  with outputs.OutputSet(workdir, "variations", common.files("variations"), overwrite) as out:
    ctx = common.setup(run)
    x = ctx.inputs.images
    common.check_grid_size(len(x) * c.num_variations, f"{len(x)} inputs x {c.num_variations} "
                           "variations")
    recon = np.asarray(ctx.vae.reconstruct(x, c.postprocess))
    start = time.perf_counter()
    var = np.asarray(ctx.vae.variations(x, c.num_variations, c.seed, **_sampling_options(c)))
    seconds = time.perf_counter() - start
    mse_recon, mse_var = common.mse(recon, x), common.mse(var, x[:, None])
    diversity = (np.asarray(metrics.diversity(var, net=None).pixel).tolist()
                 if c.num_variations > 1 else [0.0] * len(x))
    tiles = np.concatenate([x[:, None], recon[:, None], var], axis=1)
    out.write_png("variations.png", outputs.grid(
        tiles, ["input", "recon"] + [f"var {k + 1}" for k in range(var.shape[1])],
        [common.short(n) for n in ctx.inputs.names],
        captions=[[""] + [f"{m:.4f}" for m in (mse_recon[i], *mse_var[i])]
                  for i in range(len(x))]))
    out.write_npz("variations.npz", names=np.array(ctx.inputs.names), inputs=x,
                  reconstructions=recon, variations=var)
    summary = common.base_summary(ctx) | {
        "seed": c.seed, "options": ctx.vae.options(**_sampling_options(c)).__dict__,
        "num_variations": c.num_variations,
        "mse_reconstruction": mse_recon.tolist(), "mse_variations": mse_var.tolist(),
        "diversity_pairwise_rms": diversity,
        "mean_mse_variations": float(mse_var.mean()),
        "mean_diversity_pairwise_rms": float(np.mean(diversity)),
        "seconds_first_call_including_compile": seconds}
    out.commit(summary)
  common.log(f"wrote {workdir}/variations.png, variations.npz and summary.json")
  return summary


def sample(run: options.Run, workdir: str, overwrite: bool = False) -> dict:
  """num_samples faces from the prior N(0, temperature^2 I), eight per row."""
  c, n, per_row = run.common, run.section.num_samples, 8
  with outputs.OutputSet(workdir, "sample", common.files("sample"), overwrite) as out:
    ctx = common.setup(run, with_inputs=False)
    faces = np.asarray(ctx.vae.sample(n, c.seed, c.temperature, c.postprocess))
    padded = np.concatenate([faces, np.ones((-n % per_row, *faces.shape[1:]), np.float32)])
    out.write_png("sample.png", outputs.grid(padded.reshape(-1, per_row, *faces.shape[1:])))
    out.write_npz("sample.npz", samples=faces)
    summary = common.base_summary(ctx) | {"seed": c.seed, "num_samples": n,
                                          "temperature": c.temperature}
    out.commit(summary)
  common.log(f"wrote {workdir}/sample.png, sample.npz and summary.json")
  return summary


def interpolate(run: options.Run, workdir: str, overwrite: bool = False) -> dict:
  """Latent paths between consecutive inputs: input a, the decoded path, input b."""
  section = run.section
  with outputs.OutputSet(workdir, "interpolate", common.files("interpolate"), overwrite) as out:
    ctx = common.setup(run)
    x = ctx.inputs.images
    if len(x) < 2:
      raise options.ConfigError("--mode=interpolate needs at least two readable input images")
    common.check_grid_size((len(x) - 1) * section.steps, "the interpolation paths")
    path = np.asarray(ctx.vae.interpolate(x[:-1], x[1:], section.steps, section.method,
                                          run.common.postprocess))
    tiles = np.concatenate([x[:-1, None], path, x[1:, None]], axis=1)
    names = [f"{common.short(a)}>{common.short(b)}"
             for a, b in zip(ctx.inputs.names, ctx.inputs.names[1:])]
    out.write_png("interpolate.png", outputs.grid(
        tiles, ["a"] + [f"t={t:.2f}" for t in np.linspace(0, 1, section.steps)] + ["b"], names))
    out.write_npz("interpolate.npz", names=np.array(ctx.inputs.names), inputs=x, paths=path)
    summary = common.base_summary(ctx) | {
        "method": section.method, "steps": section.steps, "pairs": names,
        "mse_endpoints": [[float(common.mse(path[i, 0], x[i])),
                           float(common.mse(path[i, -1], x[i + 1]))] for i in range(len(names))]}
    out.commit(summary)
  common.log(f"wrote {workdir}/interpolate.png, interpolate.npz and summary.json")
  return summary


def _direction(ctx, section):
  """(direction [L], what it was computed from) for the edit: a CelebA attribute vector or the
  difference of the two image sets."""
  if section.attribute:
    c = ctx.run.common
    found = directions.load_or_compute(ctx.vae, c.celeba, section.split, section.max_images,
                                       common.log)
    i = found.names.index(section.attribute)
    return found.get(section.attribute), {
        "attribute": section.attribute, "celeba": c.celeba, "split": section.split,
        "n_with": int(found.n_with[i]), "n_without": int(found.n_images - found.n_with[i])}
  align = ctx.run.common.align
  with_attr = common.read_inputs(section.with_images, ctx.vae.name, align)
  without_attr = common.read_inputs(section.without_images, ctx.vae.name, align)
  return ctx.vae.attribute_direction(with_attr.images, without_attr.images), {
      "with_images": with_attr.names, "without_images": without_attr.names}


def edit(run: options.Run, workdir: str, overwrite: bool = False) -> dict:
  """Latent arithmetic: decode(mu(x) + s * direction) for each strength s; the direction is a
  CelebA attribute vector (config.edit.attribute) or mean mu(with_images) - mean mu(without)."""
  section = run.section
  with outputs.OutputSet(workdir, "edit", common.files("edit"), overwrite) as out:
    ctx = common.setup(run)
    common.check_grid_size(len(ctx.inputs.images) * len(section.strengths), "the edits")
    direction, source = _direction(ctx, section)
    strengths = np.asarray(section.strengths, np.float32)
    edited = np.asarray(ctx.vae.edit(ctx.inputs.images, direction, strengths,
                                     run.common.postprocess))
    tiles = np.concatenate([ctx.inputs.images[:, None], edited], axis=1)
    label = f"{section.attribute} " if section.attribute else ""
    out.write_png("edit.png", outputs.grid(
        tiles, ["input"] + [f"{label}s={v:g}" for v in strengths],
        [common.short(n) for n in ctx.inputs.names]))
    out.write_npz("edit.npz", names=np.array(ctx.inputs.names), inputs=ctx.inputs.images,
                  edited=edited, strengths=strengths, direction=np.asarray(direction))
    summary = common.base_summary(ctx) | source | {
        "strengths": strengths.tolist(),
        "direction_norm": float(np.linalg.norm(np.asarray(direction)))}
    out.commit(summary)
  common.log(f"wrote {workdir}/edit.png, edit.npz and summary.json")
  return summary
