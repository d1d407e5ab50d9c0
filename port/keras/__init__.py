"""The Keras port of the PVAE: readers.py (file formats), mapping.py (layers -> flax variables by
creation order), verify.py (against the Keras original), tables.py (the constants below)."""

from port.keras.tables import KERAS_MODELS, PVAE_TABLE, WEIGHTS  # noqa: F401
