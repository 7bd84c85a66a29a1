"""The public API returns typed results: every function the subpackages export that measures or computes something
returns a dataclass or a NamedTuple, never a bare dict."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

import pytest

PACKAGES = ("data", "models", "attacks", "defenses", "explain", "eval", "street", "runs", "workflows", "explore")
#: exported functions whose dict is the thing itself, not a measurement: a file's contents, settings, a lookup
NOT_RESULTS = {
    "load_class_map": "a class map file's contents",
    "match_folders": "folder name -> class id",
    "read_card": "a model card's contents",
    "load_state": "a state dict",
    "attack_settings": "the settings a checkpoint must match",
    "fit_bounds": "per-layer activation bounds (the defense's state)",
    "capture": "layer name -> activations",
    "compare": "two stored runs side by side",
}
#: the entry points that compute a result, and the result type's name
RESULTS = {
    "patchscope.eval.patch_success": "PatchSuccess",
    "patchscope.eval.measure_patch": "PatchMeasurement",
    "patchscope.eval.transfer_matrix": "TransferMatrix",
    "patchscope.eval.area_curves": "AreaCurves",
    "patchscope.street.layout_sheet": "SheetLayout",
    "patchscope.street.print_sheet": "PrintedSheet",
    "patchscope.street.calibrate_printer": "Calibration",
    "patchscope.defenses.pc_counts": "CertCounts",
    "patchscope.explain.explain_patch": "Explanation",
    "patchscope.workflows.certify": "CertifyResult",
    "patchscope.workflows.run_attack": "AttackResult",
    "patchscope.workflows.defend_patch": "DefenseResult",
    "patchscope.workflows.run_bench": "RobustnessCard",
}


def _exported_functions() -> list[tuple[str, Callable[..., Any]]]:
    found = []
    for pkg in PACKAGES:
        module = importlib.import_module(f"patchscope.{pkg}")
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj):
                found.append((f"patchscope.{pkg}.{name}", obj))
    return found


def _return_type(fn: Callable[..., Any]) -> Any:
    import torch

    from patchscope.attacks import PerImagePatches  # names some modules import for type checking only

    fn = inspect.unwrap(fn)  # a decorated function's own module, not the decorator's
    annotation = fn.__annotations__["return"]  # only the return: parameters may name other such
    scope = {**vars(typing), "torch": torch, "nn": torch.nn, **fn.__globals__, "PerImagePatches": PerImagePatches}
    return eval(annotation, scope) if isinstance(annotation, str) else annotation


def _is_typed_result(tp: Any) -> bool:
    return inspect.isclass(tp) and (dataclasses.is_dataclass(tp) or (issubclass(tp, tuple) and hasattr(tp, "_fields")))


def test_no_exported_function_returns_a_bare_dict() -> None:
    offenders = []
    for name, fn in _exported_functions():
        tp = _return_type(fn)
        origin = typing.get_origin(tp) or tp
        if inspect.isclass(origin) and issubclass(origin, Mapping) and name.rsplit(".", 1)[1] not in NOT_RESULTS:
            offenders.append(f"{name} -> {tp}")
    assert not offenders, "return a dataclass or NamedTuple (with as_dict() for JSON):\n" + "\n".join(offenders)


@pytest.mark.parametrize("path", sorted(RESULTS))
def test_entry_points_return_their_result_type(path: str) -> None:
    module, name = path.rsplit(".", 1)
    tp = _return_type(getattr(importlib.import_module(module), name))
    assert _is_typed_result(tp) and tp.__name__ == RESULTS[path], f"{path} -> {tp}"
    assert getattr(importlib.import_module(module), RESULTS[path]) is tp  # the result type is exported beside it


def test_the_study_returns_a_typed_result() -> None:
    from patchscope.workflows import RobustnessStudy, StudyResult

    assert _return_type(RobustnessStudy.__call__) is StudyResult and _is_typed_result(StudyResult)


def test_the_exceptions_to_the_rule_still_exist() -> None:
    names = {name.rsplit(".", 1)[1] for name, _ in _exported_functions()}
    assert set(NOT_RESULTS) <= names, "drop names no longer exported from NOT_RESULTS"
