"""--mode=traverse: latent traversals of each input along its most informative dimensions."""

import numpy as np

from jaxvae import options, outputs
from jaxvae.modes import common


def traverse(run: options.Run, workdir: str, overwrite: bool = False) -> dict:
  """One grid per input (traverse_<k>.png): a row per latent dimension, largest KL first, a column
  per value v of mean + v * std; the per-dimension KL printed and saved (traverse.npz, summary)."""
  section = run.section
  with outputs.OutputSet(workdir, "traverse", ["traverse.npz"], overwrite) as out:
    ctx = common.setup(run)
    x = ctx.inputs.images
    dims = None if section.num_dims == 0 else section.num_dims
    common.check_grid_size(len(x) * (dims or ctx.vae.latent_dim) * len(section.values),
                           "the traversals")
    t = ctx.vae.traverse(x, dims, section.values, section.std, run.common.postprocess)
    images = np.asarray(t.images)
    per_input = []
    for k, name in enumerate(ctx.inputs.names):
      kl = t.kl[k, t.dims[k]]
      common.log(f"{name}: KL {t.kl[k].sum():.2f} nats over {t.kl.shape[1]} dims; largest: "
                 + ", ".join(f"z{d} {v:.2f}" for d, v in zip(t.dims[k][:8], kl[:8])))
      out.write_png(f"traverse_{k}.png", outputs.grid(
          images[k], [f"{v:+g}" for v in t.values], [f"z{d} KL {v:.2f}" for d, v in
                                                      zip(t.dims[k], kl)]))
      per_input.append({"input": name, "png": f"traverse_{k}.png",
                        "kl_total": float(t.kl[k].sum()),
                        "dims": [{"dim": int(d), "kl": float(v)} for d, v in zip(t.dims[k], kl)]})
    out.write_npz("traverse.npz", names=np.array(ctx.inputs.names), inputs=x, traversals=images,
                  dims=t.dims, values=t.values, kl=t.kl)
    summary = common.base_summary(ctx) | {"std": section.std, "values": t.values.tolist(),
                                          "inputs": per_input}
    out.commit(summary)
  common.log(f"wrote {workdir}/traverse_*.png, traverse.npz and summary.json")
  return summary
