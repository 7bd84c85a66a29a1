"""patchscope: attack, explain, defend and certify image classifiers against adversarial patches.

Images everywhere are float tensors in [0, 1], shape (N, C, H, W); normalisation lives inside
the model wrappers that :func:`patchscope.models.create_model` returns.
"""

from patchscope.errors import PatchscopeError

__version__ = "0.1.0"
__all__ = ["PatchscopeError", "__version__"]
