"""port: converts published checkpoints of the four face VAEs into jaxvae's Orbax checkpoints."""
