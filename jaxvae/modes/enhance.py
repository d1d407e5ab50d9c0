"""--mode=enhance: the evaluation report's Figure 1, one row per input, MSE under every panel."""

import jax
import numpy as np

from jaxvae import options, outputs, postprocess
from jaxvae.modes import common


def enhance(run: options.Run, workdir: str, overwrite: bool = False) -> dict:
  """Original | Reconstructed | the chain's labelled panels | Final, with MSEs.

  The chain is config.postprocess, or the notebook's Figure 1 preset (`figure1`: Enhanced is
  Color 1.5 / Contrast 1.5 of the reconstruction, Dehazed dehazes the unenhanced one, Final
  smooths and sharpens the dehazed) when that is empty.
  """
  spec = run.common.postprocess or "figure1"
  try:
    panels = postprocess.build_panels(spec)
  except ValueError as e:
    raise options.ConfigError(f"--mode=enhance: {e}") from None
  with outputs.OutputSet(workdir, "enhance", common.files("enhance"), overwrite) as out:
    ctx = common.setup(run)
    x = ctx.inputs.images
    recon = ctx.vae.reconstruct(x)
    shown = jax.jit(panels.fn)(recon)
    columns = [("Original", x), ("Reconstructed", np.asarray(recon)),
               *zip(panels.labels, map(np.asarray, shown))]
    mse = {name: common.mse(images, x) for name, images in columns[1:]}
    tiles = np.stack([images for _, images in columns], axis=1)
    out.write_png("enhance.png", outputs.grid(
        tiles, [name for name, _ in columns], [common.short(n) for n in ctx.inputs.names],
        captions=[[""] + [f"mse {mse[n][i]:.4f}" for n, _ in columns[1:]] for i in range(len(x))]))
    out.write_npz("enhance.npz", names=np.array(ctx.inputs.names),
                  **{name.lower(): images for name, images in columns})
    summary = common.base_summary(ctx) | {
        "postprocess": spec, "panels": list(panels.labels),
        "mse": {n.lower(): m.tolist() for n, m in mse.items()},
        "mean_mse": {n.lower(): float(m.mean()) for n, m in mse.items()}}
    out.commit(summary)
  common.log(f"wrote {workdir}/enhance.png, enhance.npz and summary.json")
  return summary
