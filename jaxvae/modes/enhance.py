"""--mode=enhance: the evaluation report's Figure 1, one row per input, MSE under every stage."""

import jax
import numpy as np

from jaxvae import options, outputs, postprocess
from jaxvae.modes import common

# The report's intermediate columns, by stage name.
_LABELS = {"enhance": "Enhanced", "dehaze": "Dehazed"}


def enhance(run: options.Run, workdir: str, overwrite: bool = False) -> dict:
  """Original | Reconstructed | Enhanced | Dehazed | Final, with MSEs.

  The chain is config.postprocess, or the report's preset when that is empty.
  """
  spec = run.common.postprocess or "report"
  stage_names = postprocess.parse_spec(spec)
  if not stage_names:
    raise options.ConfigError(f"--mode=enhance needs post-processing stages; "
                              f"config.postprocess={spec!r}")
  with outputs.OutputSet(workdir, "enhance", common.files("enhance"), overwrite) as out:
    ctx = common.setup(run)
    x = ctx.inputs.images
    recon = ctx.vae.reconstruct(x)
    stages = jax.jit(postprocess.build_pipeline(spec, intermediates=True))(recon)
    shown = [(_LABELS[n], np.asarray(o))
             for n, o in zip(stage_names[:-1], stages[:-1]) if n in _LABELS]
    columns = [("Original", x), ("Reconstructed", np.asarray(recon)), *shown,
               ("Final", np.asarray(stages[-1]))]
    mse = {name: common.mse(images, x) for name, images in columns[1:]}
    tiles = np.stack([images for _, images in columns], axis=1)
    out.write_png("enhance.png", outputs.grid(
        tiles, [name for name, _ in columns], [common.short(n) for n in ctx.inputs.names],
        captions=[[""] + [f"mse {mse[n][i]:.4f}" for n, _ in columns[1:]] for i in range(len(x))]))
    out.write_npz("enhance.npz", names=np.array(ctx.inputs.names),
                  **{name.lower(): images for name, images in columns})
    summary = common.base_summary(ctx) | {
        "postprocess": spec, "stages": list(stage_names),
        "mse": {n.lower(): m.tolist() for n, m in mse.items()},
        "mean_mse": {n.lower(): float(m.mean()) for n, m in mse.items()}}
    out.commit(summary)
  common.log(f"wrote {workdir}/enhance.png, enhance.npz and summary.json")
  return summary
