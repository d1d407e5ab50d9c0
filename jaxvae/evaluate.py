"""--mode=evaluate: reconstruction quality, diversity and per-attribute bias of one or more models.

For each model and image: deterministic reconstruction decode(mean), one sampled reconstruction
(the first of `num_variations` posterior variations), the post-processed deterministic
reconstruction when config.postprocess is set, each scored by MSE, PSNR, SSIM and LPIPS against the
input; and the diversity of the variations (mean pairwise RMS pixel distance and LPIPS). With CelebA
attributes, the per-image deterministic MSE is broken down by attribute (bootstrap CIs of the
with-minus-without gap, and a regression on all 40 attributes). Finished batches are cached under
`workdir/evaluate_cache/`, so an interrupted run resumes where it stopped.
"""

import dataclasses
import os
import shutil
import sys
import time
from typing import Callable, Iterator, NamedTuple

import jax
import numpy as np

from jaxvae import (bias, celeba, checkpoint, data, fast, metrics, models, outputs, postprocess,
                    sampling)

# metrics.json is written last: its presence marks a finished evaluation. The other outputs of an
# interrupted run are rewritten when it resumes.
FILES = ("metrics.json",)
CACHE = "evaluate_cache"
SCORES = ("mse", "psnr", "ssim", "lpips")


class Dataset(NamedTuple):
  """What is evaluated: names, optional CelebA attributes, and a batch iterator."""
  description: str
  names: list[str]
  attributes: np.ndarray | None  # [N, 40] int8 in {-1, 1}
  batches: Callable[[int], Iterator]  # batch_size -> (indices [n], images [n, 64, 64, 3]), ...
  image: Callable[[int], np.ndarray]  # index -> [64, 64, 3]


def _log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def open_dataset(config, model_name: str) -> Dataset:
  """The CelebA split of config.celeba, else the images of config.input (no attributes)."""
  box = models.get_info(model_name).celeba_box
  if config.celeba:
    ds = celeba.open_celeba(config.celeba, config.split, config.max_images or None, box)
    return Dataset(f"CelebA {config.split} split of {config.celeba} ({len(ds)} images)",
                   [str(n) for n in ds.names], np.asarray(ds.attributes),
                   lambda bs: ((b.indices, b.images) for b in ds.batches(bs)),
                   ds.load_image)
  inputs = data.load(config.input, box)
  for path, why in inputs.skipped:
    _log(f"warning: skipped {path}: {why}")
  images = inputs.images[: config.max_images or None]

  def batches(bs: int) -> Iterator:
    for start in range(0, len(images), bs):
      yield np.arange(start, min(start + bs, len(images))), images[start:start + bs]
  return Dataset(f"{len(images)} images of input {config.input or '(bundled portraits)'}",
                 inputs.names[:len(images)], None, batches, lambda i: images[i])


def _label(ckpt_dir: str, metadata: dict, taken: set) -> str:
  source = os.path.basename(str(metadata.get("source", ""))) or metadata["model"]
  label = f"{metadata['model']}-l{metadata['model_config'].get('latent_dim', '')}"
  if label in taken:
    label = f"{label}-{os.path.splitext(source)[0]}"
  while label in taken:
    label += "'"
  return label


def _score_batch(model, variables, x: np.ndarray, key, options: sampling.Options, config,
                 net: str | None) -> dict:
  """Per-image scores of one (padded) batch: {name: [B]}."""
  recon = sampling.reconstruct(model, variables, x, options.chunk_size)
  var = sampling.variations(model, variables, x, key, int(config.num_variations), options)
  out = {f"deterministic/{k}": v for k, v in metrics.reconstruction_metrics(x, recon, net).items()}
  out |= {f"sampled/{k}": v for k, v in metrics.reconstruction_metrics(x, var[:, 0], net).items()}
  if config.postprocess:
    post = jax.jit(postprocess.build_pipeline(config.postprocess))(recon)
    out |= {f"postprocessed/{k}": v
            for k, v in metrics.reconstruction_metrics(x, post, net).items()}
  div = metrics.diversity(var, net)
  out["diversity/pixel"] = div.pixel
  if div.lpips is not None:
    out["diversity/lpips"] = div.lpips
  return {k: np.asarray(v, np.float64) for k, v in out.items()}


def _evaluate_model(ckpt_dir: str, label: str, loaded, ds: Dataset, options: sampling.Options,
                    config, cache: str) -> dict:
  """Per-image scores of every image, resuming from finished batches in `cache`."""
  net = config.lpips_net or None
  manifest = {"checkpoint": os.path.abspath(ckpt_dir), "images": ds.description,
              "n": len(ds.names), "batch_size": int(config.batch_size), "seed": int(config.seed),
              "num_variations": int(config.num_variations), "options": dataclasses.asdict(options),
              "postprocess": config.postprocess, "lpips_net": config.lpips_net}
  os.makedirs(cache, exist_ok=True)
  manifest_path = os.path.join(cache, "manifest.json")
  if os.path.exists(manifest_path) and outputs.read_json(manifest_path) != manifest:
    raise ValueError(f"{cache} holds an evaluation with other settings; pass --overwrite to "
                     "discard it, or use another --workdir")
  outputs.write_json(manifest_path, manifest)

  bs, n = int(config.batch_size), len(ds.names)
  total = -(-n // bs)
  parts, resumed, start = [], 0, time.perf_counter()
  for b, (indices, images) in enumerate(ds.batches(bs)):
    path = os.path.join(cache, f"batch_{b:05d}.npz")
    if os.path.exists(path):
      with np.load(path) as f:
        parts.append(dict(f))
      resumed += 1
      continue
    pad = bs - len(indices)  # A fixed batch shape compiles once.
    x = np.concatenate([images, np.repeat(images[-1:], pad, 0)]) if pad else images
    key = jax.random.fold_in(jax.random.key(config.seed), b)
    scores = {k: v[: len(indices)] for k, v in
              _score_batch(loaded.model, loaded.variables, x, key, options, config, net).items()}
    scores["index"] = np.asarray(indices)
    outputs.write_npz(path, **scores)
    parts.append(scores)
    done = sum(len(p["index"]) for p in parts)
    rate = (done - resumed * bs) / max(time.perf_counter() - start, 1e-9)
    _log(f"[{label}] batch {b + 1}/{total}: {done}/{n} images ({rate:.1f} images/s)")
  if resumed:
    _log(f"[{label}] resumed {resumed} finished batch(es) from {cache}")
  scores = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  order = np.argsort(scores.pop("index"), kind="stable")
  return {k: v[order] for k, v in scores.items()}


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


def _plot_models(path: str, results: dict) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  labels = list(results)
  kinds = [k for k in ("deterministic", "sampled", "postprocessed")
           if f"{k}/mse" in results[labels[0]]["metrics"]]
  shown = [s for s in SCORES if f"deterministic/{s}" in results[labels[0]]["metrics"]]
  fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.2), squeeze=False)
  width = 0.8 / len(kinds)
  for ax, score in zip(axes[0], shown):
    for j, kind in enumerate(kinds):
      stats = [results[l]["metrics"][f"{kind}/{score}"] for l in labels]
      ax.bar(np.arange(len(labels)) + j * width, [s["mean"] for s in stats], width,
             yerr=[1.96 * s["sem"] for s in stats], label=kind, capsize=2)
    ax.set_xticks(np.arange(len(labels)) + width * (len(kinds) - 1) / 2, labels, rotation=20,
                  fontsize=8)
    ax.set_title(score.upper() + (" (lower is better)" if score in ("mse", "lpips") else ""),
                 fontsize=9)
  axes[0][0].legend(fontsize=7)
  fig.tight_layout()
  _save_figure(fig, path)


def _plot_bias(path: str, label: str, gaps, regression) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  order = np.argsort(np.nan_to_num(gaps.gap, nan=0.0))
  y = np.arange(len(order))
  fig, ax = plt.subplots(figsize=(7, 9))
  g = gaps.gap[order]
  ax.errorbar(g, y, xerr=[g - gaps.ci_low[order], gaps.ci_high[order] - g], fmt="o", ms=3,
              capsize=2, label=f"gap with - without ({100 * gaps.confidence:g}% bootstrap CI)")
  if regression is not None:
    c = regression.coef[order]
    ax.errorbar(c, y + 0.3, xerr=[c - regression.ci_low[order], regression.ci_high[order] - c],
                fmt="s", ms=3, capsize=2, color="tab:orange",
                label="adjusted for all other attributes (regression)")
  names = [gaps.names[i] + (" (weak label)" if gaps.names[i] in celeba.WEAK_EVIDENCE else "")
           for i in order]
  ax.set_yticks(y, names, fontsize=7)
  ax.axvline(0, color="gray", lw=0.8)
  ax.set_xlabel("reconstruction MSE difference")
  ax.set_title(f"{label}: per-attribute reconstruction error", fontsize=10)
  ax.legend(fontsize=7, loc="lower right")
  fig.tight_layout()
  _save_figure(fig, path)


def _save_figure(fig, path: str) -> None:
  import io  # pylint: disable=import-outside-toplevel
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=110)
  plt.close(fig)
  outputs.write_bytes(path, buf.getvalue())


def _faces(path: str, label: str, loaded, ds: Dataset, mse: np.ndarray, k: int = 8) -> None:
  """Worst and best reconstructed inputs: input above reconstruction, MSE under each."""
  order = np.argsort(mse)
  k = min(k, len(order))
  picks = [("worst", order[::-1][:k]), ("best", order[:k])]
  rows, labels, captions = [], [], []
  for name, idx in picks:
    x = np.stack([ds.image(int(i)) for i in idx])
    recon = np.asarray(sampling.reconstruct(loaded.model, loaded.variables, x))
    rows += [x, recon]
    labels += [f"{name} in", f"{name} out"]
    captions += [[os.path.basename(ds.names[i])[:12] for i in idx],
                 [f"{mse[i]:.4f}" for i in idx]]
  outputs.write_png(path, outputs.grid(np.stack(rows), row_labels=labels, captions=captions))


def _report(results: dict, ds_description: str, options: sampling.Options, config) -> str:
  lines = ["# Evaluation report", "", f"Data: {ds_description}.", "",
           f"Sampled: first of {config.num_variations} posterior variations (temperature "
           f"{options.temperature}, input noise {options.input_noise_std}, rule "
           f"{options.rule}); post-processing: {config.postprocess or 'off'}; LPIPS: "
           f"{config.lpips_net or 'off'}. Means with 95% CI half-widths (1.96 SEM).", "",
           "![model comparison](evaluate_models.png)", "", "## Models", ""]
  kinds = [k for k in ("deterministic", "sampled", "postprocessed")
           if f"{k}/mse" in next(iter(results.values()))["metrics"]]

  def stat(r, key):
    m = r["metrics"].get(key)
    return "n/a" if m is None else f"{m['mean']:.4g} ± {1.96 * m['sem']:.2g}"

  lines += ["| model | images | reconstruction | " + " | ".join(s.upper() for s in SCORES) + " |",
            "|---|---|---|" + "---|" * len(SCORES)]
  for label, r in results.items():
    for kind in kinds:
      lines.append(f"| {label} | {r['n']} | {kind} | "
                   + " | ".join(stat(r, f"{kind}/{s}") for s in SCORES) + " |")
  lines += ["", f"Diversity of {config.num_variations} variations per input (mean over pairs):", "",
            "| model | pixel RMS distance | LPIPS |", "|---|---|---|"]
  for label, r in results.items():
    lines.append(f"| {label} | {stat(r, 'diversity/pixel')} | {stat(r, 'diversity/lpips')} |")
  for label, r in results.items():
    if "bias" not in r:
      continue
    lines += ["", f"## Per-attribute reconstruction MSE: {label}", "",
              f"![bias](evaluate_bias_{label}.png) ![faces](evaluate_faces_{label}.png)", "",
              "gap = mean MSE with the attribute - without, 95% bootstrap CI; adjusted = the "
              "attribute's regression coefficient with all 40 attributes in the model. "
              "`*`: interval excludes 0. With 40 attributes about 2 intervals exclude 0 by chance.",
              "", "| attribute | n with | with | without | gap [95% CI] | adjusted [95% CI] | note |",
              "|---|---|---|---|---|---|---|"]
    rows = sorted(r["bias"].items(), key=lambda kv: -abs(np.nan_to_num(kv[1]["gap"])))
    for name, b in rows:
      def cell(v, ci):
        star = "*" if np.isfinite(ci[0]) and (ci[0] > 0 or ci[1] < 0) else ""
        return f"{v:+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}]{star}" if np.isfinite(v) else "n/a"
      adjusted = cell(b["adjusted"], b["adjusted_ci"]) if "adjusted" in b else "n/a"
      lines.append(f"| {name} | {b['n_with']} | {b['mean_with']:.4f} | {b['mean_without']:.4f} | "
                   f"{cell(b['gap'], b['gap_ci'])} | {adjusted} | {b['note']} |")
    if r.get("regression") is None:
      lines += ["", "Too few images for the regression on 40 attributes (needs > 82)."]
  lines += ["", "## Worst and best reconstructions", ""]
  lines += [f"![{label}](evaluate_faces_{label}.png)" for label in results]
  return "\n".join(lines) + "\n"


def evaluate(config, workdir: str, checkpoints: list[str], options: sampling.Options,
             overwrite: bool = False) -> dict:
  """Evaluates every checkpoint in `checkpoints` and writes metrics.json, report.md and plots.

  `options` draw the variations (the first is the sampled reconstruction); config.postprocess is
  scored separately on the deterministic reconstruction.
  """
  outputs.check_free(workdir, FILES, "evaluate", overwrite)
  if config.batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {config.batch_size}")
  if config.num_variations < 2:
    raise ValueError(f"evaluate needs num_variations >= 2 for diversity, got "
                     f"{config.num_variations}")
  if config.lpips_net not in ("",) + metrics.LPIPS_NETS:
    raise ValueError(f"lpips_net must be '' or one of {metrics.LPIPS_NETS}")
  postprocess.parse_spec(config.postprocess)
  cache_root = os.path.join(workdir, CACHE)
  if overwrite and os.path.exists(cache_root):
    shutil.rmtree(cache_root)
  results, taken, description, start = {}, set(), "", time.perf_counter()
  for ckpt_dir in checkpoints:
    metadata = checkpoint.read_metadata(ckpt_dir)
    fields = ({k: v for k, v in config.model.items() if k != "name"}
              if metadata["model"] == config.model.name else {})
    loaded = checkpoint.load(ckpt_dir, **fields)
    loaded = loaded._replace(variables=fast.prepare_jit(loaded.model, loaded.variables))
    label = _label(ckpt_dir, metadata, taken)
    taken.add(label)
    ds = open_dataset(config, metadata["model"])
    description = ds.description
    t0 = time.perf_counter()
    scores = _evaluate_model(ckpt_dir, label, loaded, ds, options, config,
                             os.path.join(cache_root, label))
    result = {"checkpoint": ckpt_dir, "model": metadata["model"], "n": len(ds.names),
              "seconds": time.perf_counter() - t0, "metrics": _summarize(scores)}
    mse = scores["deterministic/mse"]
    _faces(os.path.join(workdir, f"evaluate_faces_{label}.png"), label, loaded, ds, mse)
    if ds.attributes is not None:
      gaps, regression, table, reg = _bias(mse, ds.attributes, int(config.bootstrap))
      result |= {"bias": table, "regression": reg}
      _plot_bias(os.path.join(workdir, f"evaluate_bias_{label}.png"), label, gaps, regression)
    results[label] = result
  _plot_models(os.path.join(workdir, "evaluate_models.png"), results)
  outputs.write_bytes(os.path.join(workdir, "report.md"),
                      _report(results, description, options, config).encode())
  summary = {"data": description, "seconds": time.perf_counter() - start, "models": results}
  outputs.write_json(os.path.join(workdir, "metrics.json"), summary)
  outputs.update_summary(workdir, "evaluate", {
      label: {k: v["mean"] for k, v in r["metrics"].items()} for label, r in results.items()})
  _log(f"wrote {workdir}/metrics.json, report.md and plots")
  return summary
