"""timm-style registry: `create_model(name)` and `list_models()`.

Names: the bundled zoo (``gtsrb-cnn``, ...), ``tv:NAME`` (torchvision, pretrained; ``tv:NAME:random``
for random weights), ``timm:NAME`` (timm, optional extra; ``:random`` likewise) and a path to a
``.safetensors`` (or weights-only ``.pt``) checkpoint with its JSON model card beside it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from patchscope.errors import PatchscopeError
from patchscope.models.archs import ARCHS
from patchscope.models.checkpoint import load_state, read_card
from patchscope.models.wrapper import Classifier

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def zoo_dir() -> Path:
    """The folder of bundled zoo checkpoints inside the package."""
    return Path(str(resources.files("patchscope.models").joinpath("zoo")))


def list_models() -> list[str]:
    """Names of the bundled zoo models, sorted."""
    return sorted(p.stem for p in zoo_dir().glob("*.safetensors"))


def build_net(arch: str, num_classes: int, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """Construct an untrained network from a card's ``arch`` (a zoo arch or ``tv:NAME``)."""
    kwargs = dict(kwargs or {})
    if arch in ARCHS:
        return ARCHS[arch](num_classes=num_classes, **kwargs)
    if arch.startswith("tv:"):
        import torchvision

        try:
            return torchvision.models.get_model(arch[3:], weights=None, num_classes=num_classes, **kwargs)
        except (ValueError, KeyError) as e:
            raise PatchscopeError(f"unknown torchvision model {arch[3:]!r} ({e})") from None
    raise PatchscopeError(f"unknown architecture {arch!r}: known are {', '.join(sorted(ARCHS))} and tv:NAME")


def load_checkpoint(path: Path, name: str | None = None) -> Classifier:
    """A :class:`Classifier` from weights plus the JSON card beside them."""
    card = read_card(path)
    net = build_net(card["arch"], len(card["classes"]), card.get("arch_kwargs"))
    state = load_state(path)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise PatchscopeError(f"{path}: weights do not fit the card's {card['arch']!r} architecture ({first})") from None
    return Classifier(net, card["classes"], card["input_size"], card.get("mean", (0.5,) * 3), card.get("std", (0.5,) * 3), name or path.stem, card)


def _torchvision(spec: str) -> Classifier:
    import torchvision

    name, _, mode = spec.partition(":")
    try:
        weights = None if mode == "random" else torchvision.models.get_model_weights(name).DEFAULT
        net = torchvision.models.get_model(name, weights=weights)
    except (ValueError, KeyError):
        raise PatchscopeError(f"unknown torchvision model {name!r}; see torchvision.models.list_models()") from None
    except OSError as e:  # URLError is an OSError: the download route, offline
        raise PatchscopeError(f"tv:{name}: could not fetch pretrained weights ({e.__class__.__name__}); use tv:{name}:random or a checkpoint") from None
    classes = list(weights.meta["categories"]) if weights else [f"class_{i}" for i in range(1000)]
    size = 224 if not weights else int(weights.transforms().crop_size[0])
    return Classifier(net, classes, size, IMAGENET_MEAN, IMAGENET_STD, f"tv:{spec}", {"arch": f"tv:{name}"})


def _timm(spec: str) -> Classifier:
    try:
        import timm
    except ImportError:
        raise PatchscopeError("timm models need the optional extra: pip install 'patchscope[timm]'") from None
    name, _, mode = spec.partition(":")
    try:
        net = timm.create_model(name, pretrained=mode != "random")
    except RuntimeError as e:
        raise PatchscopeError(f"timm:{name}: {str(e).splitlines()[0]}") from None
    except OSError as e:
        raise PatchscopeError(f"timm:{name}: could not fetch pretrained weights ({e.__class__.__name__}); use timm:{name}:random") from None
    cfg = net.pretrained_cfg
    classes = [f"class_{i}" for i in range(net.num_classes)]
    return Classifier(net, classes, cfg["input_size"][-1], cfg["mean"], cfg["std"], f"timm:{spec}", {"arch": f"timm:{name}"})


def create_model(name: str, device: str | torch.device = "cpu") -> Classifier:
    """Create a model by name, in eval mode, on ``device``.

    >>> m = create_model("gtsrb-cnn")
    >>> m(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 43])
    """
    if name.startswith("tv:"):
        model = _torchvision(name[3:])
    elif name.startswith("timm:"):
        model = _timm(name[5:])
    elif name in list_models():
        model = load_checkpoint(zoo_dir() / f"{name}.safetensors", name)
    elif name.endswith((".safetensors", ".pt", ".pth", ".bin")) or "/" in name:
        model = load_checkpoint(Path(name).expanduser())
    else:
        raise PatchscopeError(f"unknown model {name!r}: zoo models are {', '.join(list_models()) or '(none bundled)'}; or tv:NAME, timm:NAME, PATH.safetensors")
    return model.to(device).eval()
