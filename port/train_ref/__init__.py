"""Training references: the originals' training steps in their own frameworks, for parity tests.

`torch_train`: the Vanilla VAE, Beta-VAE and DFC-VAE in torch (train mode, the originals' losses,
torch.optim.Adam). `keras_train`: the PVAE notebook's training step rebuilt with Keras 3's own
layers, losses and optimizer on the JAX backend.
"""
