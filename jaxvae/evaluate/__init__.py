"""--mode=evaluate: reconstruction quality, diversity and per-attribute bias of one or more models.

For each model and image: deterministic reconstruction decode(mean), one sampled reconstruction
(the first of `num_variations` posterior variations), the post-processed deterministic
reconstruction when config.postprocess is set, each scored by MSE, PSNR, SSIM and LPIPS against the
input; and the diversity of the variations (mean pairwise RMS pixel distance and LPIPS). With CelebA
attributes, the per-image deterministic MSE is broken down by attribute (bootstrap CIs of the
with-minus-without gap, and a regression on all 40 attributes). Finished batches are cached under
`workdir/evaluate_cache/` (the committed units of this long run), so an interrupted run resumes
where it stopped; the report files (metrics.json, report.md, figures) are committed as one set.
"""

import os
import shutil
import time
from typing import Any

import jax
import numpy as np

from jaxvae import api, bias, celeba, chunking, metrics, options, outputs, postprocess
from jaxvae.evaluate import dataset, fid_scores, report
from jaxvae.modes import common
from jaxvae.nets import inception

CACHE = "evaluate_cache"
FILES = ("metrics.json", "report.md", "evaluate_models.png")


def _score_batch(vae: api.VAE, x: np.ndarray, key, run: options.Run, net: str | None,
                 fids: fid_scores.Accumulator | None) -> dict:
  """Per-image scores of one (padded) batch: {name: [B]}, and `fid/<set>` features [B, 2048]."""
  c = run.common
  recon = vae.reconstruct(x)
  out = {} if fids is None else fids.batch_features(vae, x, recon, jax.random.fold_in(key, 1))
  var = vae.variations(x, c.num_variations, key, temperature=c.temperature,
                       input_noise_std=c.input_noise_std, sampling_rule=c.sampling_rule)
  out |= {f"deterministic/{k}": v for k, v in metrics.reconstruction_metrics(x, recon, net).items()}
  out |= {f"sampled/{k}": v for k, v in metrics.reconstruction_metrics(x, var[:, 0], net).items()}
  if c.postprocess:
    post = jax.jit(postprocess.build_pipeline(c.postprocess))(recon)
    out |= {f"postprocessed/{k}": v
            for k, v in metrics.reconstruction_metrics(x, post, net).items()}
  div = metrics.diversity(var, net)
  out["diversity/pixel"] = div.pixel
  if div.lpips is not None:
    out["diversity/lpips"] = div.lpips
  return {k: np.asarray(v, np.float64) for k, v in out.items()}


def _open_cache(cache: str, manifest: dict) -> None:
  os.makedirs(cache, exist_ok=True)
  path = os.path.join(cache, "manifest.json")
  if os.path.exists(path) and outputs.read_json(path) != manifest:
    raise options.ConfigError(f"{cache} holds an evaluation with other settings; pass "
                              "--overwrite to discard it, or use another --workdir")
  outputs.write_json(path, manifest)


def _evaluate_model(vae: api.VAE, label: str, ds: dataset.Dataset, run: options.Run,
                    cache: str, fids: fid_scores.Accumulator | None) -> dict:
  """Per-image scores of every image, resuming from finished batches in `cache`; FID features
  stream into `fids`."""
  c, net = run.common, run.section.lpips_net or None
  bs, n = chunking.batch_size(c.batch_size), len(ds.names)
  _open_cache(cache, {
      "checkpoint": os.path.abspath(vae.checkpoint_dir), "images": ds.description,
      "n": len(ds.names), "batch_size": bs, "seed": c.seed,
      "num_variations": c.num_variations, "temperature": c.temperature,
      "input_noise_std": c.input_noise_std, "sampling_rule": c.sampling_rule,
      "postprocess": c.postprocess, "lpips_net": run.section.lpips_net,
      "fid_weights": run.section.fid_weights if fids else ""})
  parts, resumed, start = [], 0, time.perf_counter()
  try:
    for b, (indices, images) in enumerate(ds.batches(bs)):
      path = os.path.join(cache, f"batch_{b:05d}.npz")
      if os.path.exists(path):
        with np.load(path) as f:
          parts.append(_without_features(dict(f), fids))
        resumed += 1
        continue
      pad = bs - len(indices)  # A fixed batch shape compiles once.
      x = np.concatenate([images, np.repeat(images[-1:], pad, 0)]) if pad else images
      key = jax.random.fold_in(jax.random.key(c.seed), b)
      scores = {k: v[: len(indices)] for k, v in _score_batch(vae, x, key, run, net, fids).items()}
      scores["index"] = np.asarray(indices)
      outputs.write_npz(path, **scores)
      parts.append(_without_features(scores, fids))
      done = sum(len(p["index"]) for p in parts)
      rate = (done - resumed * bs) / max(time.perf_counter() - start, 1e-9)
      common.log(f"[{label}] batch {b + 1}/{-(-n // bs)}: {done}/{n} images "
                 f"({rate:.1f} images/s)")
  except KeyboardInterrupt:
    raise outputs.Interrupted(
        f"interrupted: kept {len(parts)} finished batch(es) of {label} in {cache}; run the same "
        "command again to resume") from None
  if resumed:
    common.log(f"[{label}] resumed {resumed} finished batch(es) from {cache}")
  scores = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  order = np.argsort(scores.pop("index"), kind="stable")
  return {k: v[order] for k, v in scores.items()}


def _without_features(batch: dict, fids: fid_scores.Accumulator | None) -> dict:
  """The per-image scores of a batch; its FID features go into `fids` (streamed, not kept)."""
  if fids is not None:
    fids.update(batch)
  return {k: v for k, v in batch.items() if not k.startswith("fid/")}


def _summarize(scores: dict) -> dict:
  summary = {}
  for key, v in scores.items():
    finite = v[np.isfinite(v)]
    summary[key] = {"mean": float(finite.mean()) if finite.size else float("nan"),
                    "sem": float(finite.std(ddof=1) / np.sqrt(finite.size)) if finite.size > 1
                    else float("nan"), "n": int(finite.size)}
  return summary


def _bias(errors: np.ndarray, attributes: np.ndarray, n_boot: int):
  gaps = bias.attribute_gaps(errors, attributes, n_boot=n_boot)
  regression = None
  if len(errors) > 2 * (attributes.shape[1] + 1):
    regression = bias.regress(errors, attributes)
  table = {}
  for i, name in enumerate(gaps.names):
    row = {"n_with": int(gaps.n_with[i]), "mean_with": float(gaps.mean_with[i]),
           "mean_without": float(gaps.mean_without[i]), "gap": float(gaps.gap[i]),
           "gap_ci": [float(gaps.ci_low[i]), float(gaps.ci_high[i])],
           "note": celeba.ATTRIBUTE_NOTES.get(name, "")}
    if regression is not None:
      row |= {"adjusted": float(regression.coef[i]),
              "adjusted_ci": [float(regression.ci_low[i]), float(regression.ci_high[i])],
              "adjusted_p": float(regression.p[i])}
    table[name] = row
  reg = None if regression is None else {
      "n": regression.n, "r2": regression.r2, "intercept": regression.intercept,
      "dropped": list(regression.dropped), "robust_se": regression.robust}
  return gaps, regression, table, reg


def _evaluate_one(ckpt: str, taken: set, run: options.Run, out: outputs.OutputSet,
                  cache_root: str, inception_variables: Any) -> tuple[str, dict, str]:
  """(label, result, data description) of one checkpoint; its figures go into `out`; FID
  features with `inception_variables` when config.evaluate.fid."""
  c = run.common
  vae = api.load(ckpt, c.chunk_size)
  if vae.name == c.model and c.model_fields:  # The config's fields apply to its own model.
    vae = api.load(ckpt, c.chunk_size, **dict(c.model_fields))
  label = dataset.label(ckpt, vae.metadata, taken)
  ds = dataset.open_dataset(run, vae.name, common.log)
  t0 = time.perf_counter()
  fids = fid_scores.Accumulator(inception_variables) if run.section.fid else None
  scores = _evaluate_model(vae, label, ds, run, os.path.join(cache_root, label), fids)
  result = {"checkpoint": ckpt, "model": vae.name, "n": len(ds.names),
            "seconds": time.perf_counter() - t0, "metrics": _summarize(scores)}
  if fids is not None:
    result["fid"] = fids.scores(common.log)
  mse = scores["deterministic/mse"]
  report.faces(out.path(f"evaluate_faces_{label}.png"), vae, ds, mse)
  if ds.attributes is not None:
    gaps, regression, table, reg = _bias(mse, ds.attributes, run.section.bootstrap)
    result |= {"bias": table, "regression": reg}
    report.plot_bias(out.path(f"evaluate_bias_{label}.png"), label, gaps, regression)
  return label, result, ds.description


def _generated(run: options.Run, inception_variables: Any) -> dict:
  """FID and KID of config.evaluate.generated (a --mode=generate output) against the inputs."""
  ds = dataset.open_dataset(run, run.common.model, common.log)
  bs = chunking.batch_size(run.common.batch_size)
  common.log(f"FID and KID of {run.section.generated} against {ds.description}")
  return fid_scores.generated_scores(inception_variables, run.section.generated,
                                     (images for _, images in ds.batches(bs)), bs, common.log)


def evaluate(run: options.Run, workdir: str, overwrite: bool = False) -> dict:
  """Evaluates config.checkpoint and config.evaluate.checkpoints; writes metrics.json, report.md
  and figures as one set."""
  cache_root = os.path.join(workdir, CACHE)
  with outputs.OutputSet(workdir, "evaluate", FILES, overwrite) as out:
    if overwrite and os.path.exists(cache_root):
      shutil.rmtree(cache_root)
    results, taken, description, start = {}, set(), "", time.perf_counter()
    inception_variables = (inception.load(run.section.fid_weights, common.log)
                           if run.section.fid or run.section.generated else None)
    for ckpt in (run.common.checkpoint, *run.section.checkpoints):
      label, results[label], description = _evaluate_one(ckpt, taken, run, out, cache_root,
                                                         inception_variables)
      taken.add(label)
    report.plot_models(out.path("evaluate_models.png"), results)
    extra = _generated(run, inception_variables) if run.section.generated else None
    out.write_bytes("report.md", report.report(results, description, run, extra).encode())
    summary = {"data": description, "seconds": time.perf_counter() - start, "models": results}
    if extra:
      summary["generated"] = extra
    outputs.write_json(out.path("metrics.json"), summary)
    out.commit({label: {k: v["mean"] for k, v in r["metrics"].items()}
                | {f"{k}/{m}": r["fid"][k][m] for k in fid_scores.SETS[1:] if k in r.get("fid", {})
                   for m in ("fid", "kid_mean")}
                for label, r in results.items()})
  common.log(f"wrote {workdir}/metrics.json, report.md and figures")
  return summary
