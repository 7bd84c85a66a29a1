"""timm-style registry: `create_model(name)` and `list_models()`.

Names: the bundled zoo (``gtsrb-cnn``, ...), ``tv:NAME`` (torchvision, pretrained: read from torchvision's
cache ``$TORCH_HOME/hub/checkpoints`` when there, weights-only; ``tv:NAME:random`` for random weights,
``tv:NAME:PATH`` for a state dict file), ``timm:NAME`` (timm, optional extra; ``:random`` and ``:PATH``
likewise) and a path to a ``.safetensors`` (or weights-only ``.pt``) checkpoint with its JSON model card
beside it. torchvision's and timm's models carry the card their library's metadata gives: class names,
input size, mean/std and preprocessing (resize, centre crop), so ``model.preprocess`` prepares images for them.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

import torch
from torch import nn

from patchscope.data.preprocess import Preprocess
from patchscope.errors import PatchscopeError
from patchscope.models.archs import ARCHS
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
        raise PatchscopeError(
            f"arch_kwargs must be a JSON object of architecture options, got {kwargs!r}", params=("arch_kwargs",)
        )
    kwargs = dict(kwargs or {})
    check_positive("num_classes", num_classes, 100_000)
    if arch in ARCHS:
        _check_arch_kwargs(arch, kwargs)
        with torch.device("meta"):  # count the parameters before any memory is spent on them
            size = sum(p.numel() for p in _construct(arch, num_classes, kwargs).parameters())
        if size > MAX_PARAMS:
            raise PatchscopeError(
                f"arch_kwargs {json.dumps(kwargs)} make a {arch} of {size:,} parameters; "
                f"at most {MAX_PARAMS:,} are allowed",
                params=("arch_kwargs",),
            )
        return _construct(arch, num_classes, kwargs)
    if arch.startswith("tv:"):
        return _tv_net(arch[3:], num_classes, kwargs)
    raise PatchscopeError(
        f"unknown architecture {arch!r}: known are {', '.join(ARCHS.list())}, tv:NAME and tv:CLASS "
        "(e.g. tv:VisionTransformer)"
    )


#: the most parameters a network built from a card or ``arch_kwargs`` may have (4 GB of float32)
MAX_PARAMS = 1_000_000_000


def _tv_net(name: str, num_classes: int, kwargs: dict[str, Any]) -> nn.Module:
    """A torchvision builder (``resnet18``) with ``kwargs``, or a torchvision model class (``VisionTransformer``) built
    from ``kwargs`` alone: its own sizes, e.g. a small ViT."""
    import torchvision

    found = getattr(torchvision.models, name, None)
    cls: type[nn.Module] | None = found if isinstance(found, type) and issubclass(found, nn.Module) else None
    is_class = name not in torchvision.models.list_models() and cls is not None
    if not is_class and name not in torchvision.models.list_models():
        raise PatchscopeError(f"unknown torchvision model {name!r}; see torchvision.models.list_models()")
    try:
        if is_class and cls is not None:
            with torch.device("meta"):
                size = sum(p.numel() for p in cls(num_classes=num_classes, **kwargs).parameters())
            if size > MAX_PARAMS:
                raise PatchscopeError(
                    f"arch_kwargs make a {name} of {size:,} parameters; at most {MAX_PARAMS:,} are allowed",
                    params=("arch_kwargs",),
                )
            return cls(num_classes=num_classes, **kwargs)
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise PatchscopeError(
            f"arch_kwargs {json.dumps(kwargs)} do not make a torchvision {name} ({str(e).splitlines()[0][:160]})",
            params=("arch_kwargs",),
        ) from None


def _check_arch_kwargs(arch: str, kwargs: dict[str, Any]) -> None:
    """Each option is one the constructor takes, of its default's type, positive (fractions: in [0, 1))."""
    defaults = ARCHS.spec(arch).defaults
    for key, value in kwargs.items():
        if key not in defaults:
            raise PatchscopeError(
                f"arch_kwargs: {arch} has no option {key!r}; its options are {', '.join(defaults)}",
                params=("arch_kwargs",),
            )
        default = defaults[key]
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
        net = ARCHS.create(
            arch, num_classes=num_classes, **{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
        )
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError) as e:
        raise PatchscopeError(
            f"arch_kwargs {json.dumps(kwargs)} do not make a {arch} ({str(e).splitlines()[0][:120]})",
            params=("arch_kwargs",),
        ) from None
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
        raise PatchscopeError(
            f"{path}: weights do not fit the card's {card['arch']!r} architecture ({first})"
        ) from None
    model = Classifier(
        net,
        card["classes"],
        card["input_size"],
        card.get("mean", (0.5,) * 3),
        card.get("std", (0.5,) * 3),
        name or path.stem,
        card,
    )
    probe_net(model, model.input_size, len(model.classes), f"{path}: the model")
    return model


def _tv_card(name: str, weights: Any, source: str) -> dict[str, Any]:
    """The card of a torchvision model from its weights' metadata: classes, input size, preprocessing, mean/std."""
    t = weights.transforms() if weights is not None else None
    if t is None or not hasattr(t, "crop_size"):
        return {
            "arch": f"tv:{name}",
            "weights": source,
            "classes": [f"class_{i}" for i in range(1000)],
            "input_size": 224,
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        }
    crop, resize = int(t.crop_size[0]), int(t.resize_size[0])
    prep = Preprocess(max(resize, crop), crop, t.interpolation.value)
    return {
        "arch": f"tv:{name}",
        "weights": source,
        "classes": list(weights.meta["categories"]),
        "input_size": crop,
        "mean": list(t.mean),
        "std": list(t.std),
        "preprocess": prep.as_dict(),
    }


def _tv_cached_file(weights: Any) -> Path:
    """Where torchvision keeps these weights once downloaded: ``$TORCH_HOME/hub/checkpoints/FILE``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def _tv_pretrained_state(name: str, weights: Any) -> dict[str, torch.Tensor]:
    """The default weights: from torchvision's cache (weights-only load), else downloaded as torchvision would."""
    cached = _tv_cached_file(weights)
    if cached.is_file():
        return load_state(cached)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # torch's "Downloading: URL" would break --json on stdout
            return torch.hub.load_state_dict_from_url(weights.url, progress=False, check_hash=True, weights_only=True)
    except (OSError, RuntimeError) as e:  # URLError is an OSError: offline
        raise PatchscopeError(
            f"tv:{name}: pretrained weights are not in torchvision's cache ({cached}) and could not be fetched "
            f"({e.__class__.__name__}); put the file there, or use tv:{name}:PATH (a state dict) or tv:{name}:random"
        ) from None


@contextlib.contextmanager
def _serving(weights: Any, state: dict[str, torch.Tensor]) -> Iterator[None]:
    """While the block runs, these torchvision weights give ``state`` when their builder asks for their state dict
    (instead of downloading it); only this weights entry, restored on the way out."""
    weights.get_state_dict = lambda *args, **kwargs: state
    try:
        yield
    finally:
        del weights.get_state_dict


def _build_tv(name: str, weights: Any, state: dict[str, torch.Tensor] | None) -> nn.Module:
    """torchvision's own builder, fed ``state`` (already loaded safely) instead of its download."""
    import torchvision

    if state is None:
        return torchvision.models.get_model(name, weights=None)
    with _serving(weights, state):
        try:
            return torchvision.models.get_model(name, weights=weights)
        except RuntimeError as e:
            raise PatchscopeError(
                f"tv:{name}: weights do not fit torchvision's {name} ({str(e).splitlines()[0][:160]})"
            ) from None


def _torchvision(spec: str) -> Classifier:
    """``NAME`` (default weights, from torchvision's cache), ``NAME:random`` or ``NAME:PATH`` (a state dict)."""
    import torchvision

    name, colon, mode = spec.partition(":")
    if colon and not mode.strip():
        raise PatchscopeError(f"tv:{spec}: give a weights file after the colon (tv:{name}:PATH), or tv:{name}:random")
    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError, AttributeError):
        raise PatchscopeError(f"unknown torchvision model {name!r}; see torchvision.models.list_models()") from None
    if mode == "random":
        state, source = None, "random"
    elif mode:
        state, source = load_state(Path(mode).expanduser()), mode
    else:
        state, source = _tv_pretrained_state(name, weights), str(weights)
    card = _tv_card(name, weights, source)
    net = _build_tv(name, weights, state)
    return Classifier(net, card["classes"], card["input_size"], card["mean"], card["std"], f"tv:{spec}", card)


def _timm_card(net: nn.Module, name: str, source: str) -> dict[str, Any]:
    """The card of a timm model from its pretrained config: ImageNet class names and WordNet ids where known."""
    from timm.data import ImageNetInfo, infer_imagenet_subset, resolve_data_config

    cfg = resolve_data_config({}, model=net)
    crop = int(cfg["input_size"][-1])
    resize = crop if cfg.get("crop_mode") == "squash" else int(math.floor(crop / float(cfg.get("crop_pct") or 1.0)))
    prep = Preprocess(
        resize if cfg.get("crop_mode") != "squash" else (resize, resize),
        crop,
        _timm_interpolation(cfg.get("interpolation")),
    )
    card: dict[str, Any] = {
        "arch": f"timm:{name}",
        "weights": source,
        "input_size": crop,
        "mean": list(cfg["mean"]),
        "std": list(cfg["std"]),
        "preprocess": prep.as_dict(),
    }
    subset = infer_imagenet_subset(net)
    if subset:
        info = ImageNetInfo(subset)
        card["wnids"] = list(info.label_names())
        card["classes"] = (
            _imagenet1k_names()
            if subset == "imagenet-1k"
            else [d.split(",")[0].strip() for d in info.label_descriptions()]
        )
    else:
        card["classes"] = [f"class_{i}" for i in range(cast(int, net.num_classes))]  # every timm model has it
    return card


def _timm_interpolation(name: str | None) -> str:
    return name if name in ("nearest", "bilinear", "bicubic") else "bilinear"


def _imagenet1k_names() -> list[str]:
    """ImageNet-1k's class names as torchvision ships them (``tench`` ... ``toilet tissue``)."""
    import torchvision

    return list(torchvision.models.ResNet18_Weights.DEFAULT.meta["categories"])


def _timm(spec: str) -> Classifier:
    """``NAME`` (pretrained, timm's own cache and loader), ``NAME:random`` or ``NAME:PATH`` (a state dict)."""
    try:
        import timm
    except ImportError:
        raise PatchscopeError("timm models need the optional extra: pip install 'patchscope[timm]'") from None
    name, colon, mode = spec.partition(":")
    if colon and not mode.strip():
        raise PatchscopeError(
            f"timm:{spec}: give a weights file after the colon (timm:{name}:PATH), or timm:{name}:random"
        )
    try:
        net = timm.create_model(name, pretrained=mode == "")
    except RuntimeError as e:
        raise PatchscopeError(f"timm:{name}: {str(e).splitlines()[0]}") from None
    except Exception as e:  # noqa: BLE001  (huggingface_hub's offline and HTTP errors all mean the same here)
        raise PatchscopeError(
            f"timm:{name}: could not fetch pretrained weights ({e.__class__.__name__}); "
            f"use timm:{name}:PATH (a state dict) or timm:{name}:random"
        ) from None
    if mode and mode != "random":
        try:
            net.load_state_dict(load_state(Path(mode).expanduser()), strict=True)
        except RuntimeError as e:
            raise PatchscopeError(
                f"{mode}: weights do not fit timm's {name} ({str(e).splitlines()[0][:160]})"
            ) from None
    card = _timm_card(net, name, mode or "pretrained")
    return Classifier(net, card["classes"], card["input_size"], card["mean"], card["std"], f"timm:{spec}", card)


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
        raise PatchscopeError(
            f"unknown model {name!r}: zoo models are {', '.join(list_models()) or '(none bundled)'}; "
            "or tv:NAME, timm:NAME, PATH.safetensors"
        )
    return model.to(device).eval()
