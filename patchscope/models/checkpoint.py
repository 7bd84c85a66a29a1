"""Weights in and out, safely: safetensors (plus a JSON model card), or ``torch.load(weights_only=True)``.

A pickle that would run code is refused before any of it runs.
"""

from __future__ import annotations

import json
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from patchscope.errors import PatchscopeError
from patchscope.io import atomic_path, write_json
from patchscope.validate import MAX_IMAGE_SIZE, check_finite, check_int, check_range

CARD_KEYS = ("arch", "classes", "input_size")


def card_path(weights: Path) -> Path:
    """The model card beside a weights file: ``model.safetensors`` -> ``model.json``."""
    return weights.with_suffix(".json")


def _card_json(weights: Path, path: Path) -> Any:
    """The card's JSON, whatever it holds; one line where it cannot be read."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PatchscopeError(
            f"{weights}: no model card {path.name} beside it (JSON with arch, classes, input_size)"
        ) from None
    except IsADirectoryError:
        raise PatchscopeError(f"{path}: the model card is a folder, not a JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PatchscopeError(f"{path}: model card is not valid JSON ({e})") from None
    except RecursionError:
        raise PatchscopeError(f"{path}: model card is nested too deeply to be a model card") from None


def read_card(weights: Path) -> dict[str, Any]:
    """Read and check the model card beside ``weights``."""
    path = card_path(weights)
    card = _card_json(weights, path)
    missing = [k for k in CARD_KEYS if not isinstance(card, dict) or k not in card]
    if missing:
        raise PatchscopeError(f"{path}: model card lacks {', '.join(missing)}")
    if (
        not isinstance(card["classes"], list)
        or not card["classes"]
        or not all(isinstance(c, str) for c in card["classes"])
    ):
        raise PatchscopeError(f"{path}: model card's classes must be a non-empty list of names")
    if not isinstance(card["arch"], str):
        raise PatchscopeError(f"{path}: model card's arch must be a name, got {card['arch']!r}")
    try:
        check_int("input_size", card["input_size"], 1, MAX_IMAGE_SIZE)
        for key in ("mean", "std"):
            value = card.get(key)
            if value is None:
                continue
            if not isinstance(value, list) or len(value) != 3:
                raise PatchscopeError(f"{key} must be a list of 3 numbers (one per RGB channel), got {value!r}")
            for v in value:
                check_range(key, v, 0.0, 1e3, low_open=key == "std") if key == "std" else check_finite(key, v)
        if card.get("arch_kwargs") is not None and not isinstance(card["arch_kwargs"], dict):
            raise PatchscopeError(f"arch_kwargs must be a JSON object, got {card['arch_kwargs']!r}")
        _check_card_rest(card)
    except PatchscopeError as e:
        why = str(e).removeprefix("model card's ")
        raise PatchscopeError(f"{path}: model card's {why}") from None
    return card


def _check_card_rest(card: dict[str, Any]) -> None:
    """The card's optional entries, all checked when it is read (not when a command first uses one): the
    preprocessing and the classes' WordNet ids."""
    from patchscope.data.preprocess import Preprocess

    Preprocess.from_card(card, card["input_size"])
    wnids = card.get("wnids")
    if wnids is not None and (
        not isinstance(wnids, list)
        or len(wnids) != len(card["classes"])
        or not all(isinstance(w, str) and w for w in wnids)
    ):
        raise PatchscopeError(
            f"wnids must be a list of {len(card['classes'])} WordNet ids (one per class), got {wnids!r}"
        )


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """Load a state dict from ``.safetensors`` or a weights-only ``.pt``/``.pth``; never runs pickled code."""
    if not path.exists():
        raise PatchscopeError(f"no such weights file: {path}")
    if path.is_dir():
        raise PatchscopeError(f"{path}: a folder, not a weights file")
    if path.suffix == ".safetensors":
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise PatchscopeError(f"{path}: not a valid safetensors file ({str(e).splitlines()[0]})") from None
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, AttributeError) as e:
            raise PatchscopeError(
                f"{path}: refused, not a plain weights file; loading it would need to run pickled code ({_why(e)})"
            ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PatchscopeError(f"{path}: expected a dict of tensors (a state_dict)")
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _why(e: Exception) -> str:
    text = str(e)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    return text.strip().splitlines()[0][:120] if text.strip() else e.__class__.__name__


def save_checkpoint(net: torch.nn.Module, card: dict[str, Any], weights: Path, half: bool = True) -> None:
    """Write ``weights`` (safetensors, fp16 when ``half``) and its card, each atomically."""
    state = {
        k: (v.half() if half and v.is_floating_point() else v).contiguous().cpu() for k, v in net.state_dict().items()
    }
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp))
    write_json(card_path(weights), card)


def weights_fingerprint(model: torch.nn.Module) -> str:
    """16 hex digits naming a model's weights (every tensor's shape, sum and first values, in order; not their names,
    so a wrapper around the model has its fingerprint): a checkpoint that records it cannot be resumed with other
    weights under the same model name.

    >>> a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    >>> weights_fingerprint(a) == weights_fingerprint(a), weights_fingerprint(a) == weights_fingerprint(b)
    (True, False)
    """
    import hashlib

    h = hashlib.sha256()
    with torch.no_grad():
        for t in model.state_dict().values():
            flat = t.detach().reshape(-1)
            head = flat[:1024].double().cpu().numpy().tobytes() if flat.is_floating_point() else b""
            total = float(flat.double().sum()) if flat.numel() and not flat.is_complex() else 0.0
            h.update(f"{tuple(t.shape)}\0{total!r}\0".encode() + head)
    return h.hexdigest()[:16]
