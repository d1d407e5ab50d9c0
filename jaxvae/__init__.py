"""jaxvae: four published face VAEs in JAX/Flax with exact parity to the originals."""
