"""Auxiliary pretrained networks (not VAEs): the FID Inception-v3 and VGG19 features, in flax."""
