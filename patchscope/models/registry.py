"""timm-style registry: `create_model(name)` and `list_models()`.

Names: the bundled zoo (``gtsrb-cnn``, ...), ``tv:NAME`` (torchvision, pretrained; ``tv:NAME:random``
for random weights), ``timm:NAME`` (timm, optional extra; ``:random`` likewise) and a path to a
``.safetensors`` (or weights-only ``.pt``) checkpoint with its JSON model card beside it.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from patchscope.errors import PatchscopeError
from patchscope.models.archs import ARCHS, ViT
from patchscope.models.checkpoint import card_path, load_state, read_card
from patchscope.models.wrapper import Classifier
from patchscope.validate import check_positive, check_range

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def zoo_dir() -> Path:
    """The folder of bundled zoo checkpoints inside the package."""
    return Path(str(resources.files("patchscope.models").joinpath("zoo")))


def list_models() -> list[str]:
    """Names of the bundled zoo models, sorted."""
    return sorted(p.stem for p in zoo_dir().glob("*.safetensors"))


def build_net(arch: str, num_classes: int, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """Construct an untrained network from a card's ``arch`` (a zoo arch or ``tv:NAME``)."""
    if kwargs is not None and not isinstance(kwargs, dict):
        raise PatchscopeError(f"arch_kwargs must be a JSON object of architecture options, got {kwargs!r}")
    kwargs = dict(kwargs or {})
    check_positive("num_classes", num_classes, 100_000)
    if arch in ARCHS:
        _check_arch_kwargs(arch, kwargs)
        with torch.device("meta"):  # count the parameters before any memory is spent on them
            size = sum(p.numel() for p in _construct(arch, num_classes, kwargs).parameters())
        if size > MAX_PARAMS:
            raise PatchscopeError(f"arch_kwargs {json.dumps(kwargs)} make a {arch} of {size:,} parameters; at most {MAX_PARAMS:,} are allowed")
        return _construct(arch, num_classes, kwargs)
    if arch.startswith("tv:"):
        import torchvision

        try:
            return torchvision.models.get_model(arch[3:], weights=None, num_classes=num_classes, **kwargs)
        except (ValueError, KeyError) as e:
            raise PatchscopeError(f"unknown torchvision model {arch[3:]!r} ({e})") from None
    raise PatchscopeError(f"unknown architecture {arch!r}: known are {', '.join(sorted(ARCHS))} and tv:NAME")


#: the most parameters a network built from a card or ``arch_kwargs`` may have (4 GB of float32)
MAX_PARAMS = 1_000_000_000


def _check_arch_kwargs(arch: str, kwargs: dict[str, Any]) -> None:
    """Each option is one the constructor takes, of its default's type, positive (fractions: in [0, 1))."""
    import inspect

    params = inspect.signature(ARCHS[arch]).parameters
    open_ended = any(p.kind is p.VAR_KEYWORD for p in params.values())
    if open_ended and arch == "vit":
        params = inspect.signature(ViT).parameters
    known = [n for n, p in params.items() if n not in ("num_classes", "self") and p.kind is not p.VAR_KEYWORD]
    for key, value in kwargs.items():
        if key not in known:
            raise PatchscopeError(f"arch_kwargs: {arch} has no option {key!r}; its options are {', '.join(known)}")
        default = params[key].default
        name = f"arch_kwargs {key}"
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise PatchscopeError(f"{name} must be true or false, got {value!r}")
        elif isinstance(default, int):
            check_positive(name, value, 1 << 16)
        elif isinstance(default, float):
            if key in ("dropout",):
                check_range(name, value, 0.0, 1.0, high_open=True)
            else:
                check_range(name, value, 0.0, 1e4, low_open=True)
        elif isinstance(default, tuple):
            if not isinstance(value, (list, tuple)) or not value:
                raise PatchscopeError(f"{name} must be a non-empty list of whole numbers, got {value!r}")
            for v in value:
                check_positive(name, v, 1 << 16)


def _construct(arch: str, num_classes: int, kwargs: dict[str, Any]) -> nn.Module:
    try:
        net = ARCHS[arch](num_classes=num_classes, **{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()})
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError) as e:
        raise PatchscopeError(f"arch_kwargs {json.dumps(kwargs)} do not make a {arch} ({str(e).splitlines()[0][:120]})") from None
    return net


def probe_net(net: nn.Module, image_size: int, num_classes: int, what: str) -> None:
    """Run one blank image through ``net``: refuse options that build but cannot run on ``image_size``-px input."""
    try:
        with torch.no_grad():
            was = net.training
            out = net.eval()(torch.zeros(1, 3, image_size, image_size, device=next(net.parameters()).device))
            net.train(was)
    except (RuntimeError, ValueError, IndexError, ZeroDivisionError) as e:
        raise PatchscopeError(f"{what} cannot take {image_size}px images ({str(e).splitlines()[0][:120]})") from None
    if out.ndim != 2 or out.shape[1] != num_classes:
        raise PatchscopeError(f"{what} gives outputs of shape {tuple(out.shape)} for {num_classes} classes")


def load_checkpoint(path: Path, name: str | None = None) -> Classifier:
    """A :class:`Classifier` from weights plus the JSON card beside them."""
    card = read_card(path)
    try:
        net = build_net(card["arch"], len(card["classes"]), card.get("arch_kwargs"))
    except PatchscopeError as e:
        raise PatchscopeError(f"{card_path(path)}: model card's {e}") from None
    state = load_state(path)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise PatchscopeError(f"{path}: weights do not fit the card's {card['arch']!r} architecture ({first})") from None
    model = Classifier(net, card["classes"], card["input_size"], card.get("mean", (0.5,) * 3), card.get("std", (0.5,) * 3), name or path.stem, card)
    probe_net(model, model.input_size, len(model.classes), f"{path}: the model")
    return model


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
