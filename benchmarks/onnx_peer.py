"""ONNX Runtime as a peer: the torch originals exported with torch.onnx.export and run by ORT.

What users pick to serve a torch model on CPU. The encoder and the decoder are exported as two
graphs with a dynamic batch axis (TorchScript exporter, `dynamo=False`: torch 2.13's default
dynamo exporter needs the `onnxscript` package, this one needs nothing beyond torch), so that the
chunk size can be searched as for torch. Sampling between them (z = mean + exp(logvar / 2) eps,
[B*K, L]) runs in numpy, as torch_generate does it in torch.

Pins: onnxruntime==1.31.1 (benchmarks only; jaxvae never imports it).
"""

import io
import os
import warnings

import numpy as np

OPSET = 17


def available() -> str | None:
  """None when onnxruntime imports, else why not."""
  try:
    import onnxruntime  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError as e:
    return f"onnxruntime not installed ({e}); pip install onnxruntime==1.31.1"
  return None


def version() -> str:
  import onnxruntime  # pylint: disable=import-outside-toplevel
  return onnxruntime.__version__


def _export(fn, example, input_name: str, output_names: list[str]) -> bytes:
  """torch.onnx.export of `fn` (a torch.nn.Module) with a dynamic leading axis -> ONNX bytes."""
  import torch  # pylint: disable=import-outside-toplevel
  buf = io.BytesIO()
  axes = {name: {0: "n"} for name in [input_name, *output_names]}
  with torch.no_grad(), warnings.catch_warnings():
    # DFC-VAE's strided slices are left unfolded; harmless, and said three times per export.
    warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
    torch.onnx.export(fn, (example,), buf, input_names=[input_name], output_names=output_names,
                      dynamic_axes=axes, opset_version=OPSET, dynamo=False)
  return buf.getvalue()


class OrtPair:
  """Encoder and decoder of a torch VAE (with .encode, .decode; NCHW) as two ORT sessions."""

  def __init__(self, module, latent: int, threads: int | None = None):
    import onnxruntime as ort  # pylint: disable=import-outside-toplevel
    import torch  # pylint: disable=import-outside-toplevel

    class Method(torch.nn.Module):
      """`module`'s method `name` as forward, for export (traced, dynamo=False)."""

      def __init__(self, name: str):
        super().__init__()
        self.m, self.name = module, name

      def forward(self, x):
        return getattr(self.m, self.name)(x)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or os.cpu_count() or 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = ["CPUExecutionProvider"]
    enc = _export(Method("encode").eval(), torch.zeros(2, 3, 64, 64), "x", ["mean", "logvar"])
    dec = _export(Method("decode").eval(), torch.zeros(2, latent), "z", ["y"])
    self.encoder = ort.InferenceSession(enc, opts, providers=providers)
    self.decoder = ort.InferenceSession(dec, opts, providers=providers)
    self.threads = opts.intra_op_num_threads

  def generate(self, x_nchw: np.ndarray, eps: np.ndarray, chunk: int, value_range) -> np.ndarray:
    """common.torch_generate with ORT: x [B, 3, 64, 64] float32 in the model's input range,
    eps [B, K, L] -> [B*K, 3, 64, 64] in [0, 1] (clipped)."""
    lo, hi = value_range
    n = x_nchw.shape[0]
    step = chunk if chunk > 0 else n
    parts = [self.encoder.run(None, {"x": x_nchw[i:i + step]}) for i in range(0, n, step)]
    mean = np.concatenate([m for m, _ in parts])
    logvar = np.concatenate([v for _, v in parts])
    z = (mean[:, None] + np.exp(np.float32(0.5) * logvar)[:, None] * eps).reshape(-1, mean.shape[1])
    step = chunk if chunk > 0 else z.shape[0]
    y = np.concatenate([self.decoder.run(None, {"z": z[i:i + step]})[0]
                        for i in range(0, z.shape[0], step)])
    return np.clip((y - lo) / (hi - lo), 0.0, 1.0)
