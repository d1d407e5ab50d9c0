"""evaluate's figures (matplotlib, drawn off-screen) and its markdown report."""

import io
import os

import numpy as np

from jaxvae import celeba, options, outputs

SCORES = ("mse", "psnr", "ssim", "lpips")


def plot_models(path: str, results: dict) -> None:
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
  save_figure(fig, path)


def plot_bias(path: str, label: str, gaps, regression) -> None:
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
  save_figure(fig, path)


def save_figure(fig, path: str) -> None:
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=110)
  plt.close(fig)
  outputs.write_bytes(path, buf.getvalue())


def faces(path: str, vae, ds, mse: np.ndarray, k: int = 8) -> None:
  """Worst and best reconstructed inputs: input above reconstruction, MSE under each."""
  order = np.argsort(mse)
  k = min(k, len(order))
  picks = [("worst", order[::-1][:k]), ("best", order[:k])]
  rows, labels, captions = [], [], []
  for name, idx in picks:
    x = np.stack([ds.image(int(i)) for i in idx])
    recon = np.asarray(vae.reconstruct(x))
    rows += [x, recon]
    labels += [f"{name} in", f"{name} out"]
    captions += [[os.path.basename(ds.names[i])[:12] for i in idx],
                 [f"{mse[i]:.4f}" for i in idx]]
  outputs.write_png(path, outputs.grid(np.stack(rows), row_labels=labels, captions=captions))


def fid_table(results: dict) -> list[str]:
  """Markdown rows of FID and KID (x 1000), when evaluate computed them."""
  rows = [(label, r["fid"]) for label, r in results.items() if "fid" in r]
  if not rows:
    return []
  lines = ["", "FID and KID (pytorch-fid's Inception-v3 pool3 features) against the inputs; "
           "KID x 1000, mean +- std over subsets:", "",
           "| model | images | reconstructions FID | KID | prior samples FID | KID |",
           "|---|---|---|---|---|---|"]
  for label, f in rows:
    cells = [f"{f[s]['fid']:.2f} | {1000 * f[s]['kid_mean']:.2f} +- {1000 * f[s]['kid_std']:.2f}"
             for s in ("reconstructions", "samples")]
    lines.append(f"| {label} | {f['n']} | {cells[0]} | {cells[1]} |")
  lines += [f"- {w}" for w in dict.fromkeys(w for _, f in rows for w in f["warnings"])]
  return lines


def report(results: dict, ds_description: str, run: options.Run,
           generated: dict | None = None) -> str:
  """report.md: models table, diversity, per-attribute tables with their caveats, figures."""
  c, section = run.common, run.section
  lines = ["# Evaluation report", "", f"Data: {ds_description}.", "",
           f"Sampled: first of {c.num_variations} posterior variations (temperature "
           f"{c.temperature}, input noise {c.input_noise_std}, rule "
           f"{c.sampling_rule}); post-processing: {c.postprocess or 'off'}; LPIPS: "
           f"{section.lpips_net or 'off'}. Means with 95% CI half-widths (1.96 SEM).", "",
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
  lines += ["", f"Diversity of {c.num_variations} variations per input (mean over pairs):", "",
            "| model | pixel RMS distance | LPIPS |", "|---|---|---|"]
  for label, r in results.items():
    lines.append(f"| {label} | {stat(r, 'diversity/pixel')} | {stat(r, 'diversity/lpips')} |")
  lines += fid_table(results)
  if generated:
    lines += ["", f"Generated images of {generated['generated']} against the inputs: FID "
              f"{generated['fid']:.2f}, KID x 1000 {1000 * generated['kid_mean']:.2f} +- "
              f"{1000 * generated['kid_std']:.2f} ({generated['n_generated']} generated, "
              f"{generated['n_real']} real images)."]
    lines += [f"- {w}" for w in generated["warnings"]]
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
