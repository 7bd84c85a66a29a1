from __future__ import annotations

import json

import pytest

from patchscope.attacks import list_patches, load_patch
from patchscope.errors import PatchscopeError
from patchscope.models import list_models
from tests.conftest import run_cli


def test_every_bundled_patch_loads_and_names_its_model_and_classes():
    for name in list_patches():
        patch = load_patch(f"zoo:{name}")
        model, _ = name.split("/")
        assert model in list_models()
        assert patch.meta["model"] == model and patch.meta["source"] == "stop"
        assert 0 < patch.area_fraction < 0.15 and patch.pixels.min() >= 0 and patch.pixels.max() <= 1
    with pytest.raises(PatchscopeError, match="unknown zoo patch"):
        load_patch("zoo:gtsrb-cnn/nothing")


@pytest.mark.skipif("gtsrb-cnn/stop-yield" not in list_patches(), reason="patch zoo not bundled")
def test_a_zoo_patch_is_usable_by_name_on_the_command_line():
    proc = run_cli(
        "evaluate",
        "--patch",
        "zoo:gtsrb-cnn/stop-yield",
        "--models",
        "gtsrb-cnn",
        "--data",
        "demo",
        "--conditions",
        "none",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)["models"]["gtsrb-cnn"]
    assert res["source"] == "stop" and res["target"] == "yield" and res["images"] == 270
    # clean_accuracy is the whole data set's, as without --patch; the Stop images' own is source_clean_accuracy
    bare = json.loads(run_cli("evaluate", "--models", "gtsrb-cnn", "--data", "demo", "--json").stdout)["models"][
        "gtsrb-cnn"
    ]
    assert (
        res["clean_accuracy"] == bare["clean_accuracy"] and res["clean_images"] == bare["clean_images"] > res["images"]
    )
    assert 0 <= res["source_clean_accuracy"] <= 1


def test_every_zoo_patch_ships_its_measured_success_and_zoo_lists_it():
    from patchscope.attacks.patch import patch_zoo_dir

    for name in list_patches():
        model = name.split("/")[0]
        measured = json.loads((patch_zoo_dir() / name / "evaluate.json").read_text())["models"][model]
        assert measured["patch_area"] == pytest.approx(load_patch(f"zoo:{name}").area_fraction), name
        assert 0 <= measured["untargeted_success"] <= 1 and measured["images"] > 0
    listed = json.loads(run_cli("zoo", "--json").stdout)["patches"]
    assert [p["name"] for p in listed] == list_patches() and all(p["untargeted_success"] is not None for p in listed)
