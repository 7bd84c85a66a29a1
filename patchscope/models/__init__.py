"""Models: the registry (`create_model`, `list_models`), the [0,1]-input `Classifier`, checkpoints, training.

>>> from patchscope.models import create_model, list_models
>>> "gtsrb-cnn" in list_models()
True
"""

from patchscope.models.archs import ARCHS, register_arch
from patchscope.models.checkpoint import load_state, read_card, save_checkpoint
from patchscope.models.device import default_device, resolve_device
from patchscope.models.registry import build_net, create_model, list_models, load_checkpoint, zoo_dir
from patchscope.models.wrapper import Classifier, Ensemble

__all__ = [
    "ARCHS",
    "Classifier",
    "Ensemble",
    "build_net",
    "create_model",
    "default_device",
    "list_models",
    "load_checkpoint",
    "load_state",
    "read_card",
    "register_arch",
    "resolve_device",
    "save_checkpoint",
    "zoo_dir",
]
