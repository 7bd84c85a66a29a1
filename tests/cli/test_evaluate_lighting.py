"""`patchscope evaluate --per-sign-lighting`: the patch's success with its own colours and under each sign's own
lighting, side by side in the table and the JSON."""

from __future__ import annotations

import json

from tests.cli._contract import assert_contract, invoke


def test_evaluate_reports_uniform_and_per_sign_lighting_side_by_side(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    args = ("evaluate", "--patch", "zoo:gtsrb-cnn/stop-yield", "--data", "demo", "--conditions", "none")
    r = invoke(*args, "--per-sign-lighting", "--json")
    assert_contract(r)
    assert r.code == 0, r.err
    row = json.loads(r.out)["models"]["gtsrb-cnn"]
    lit = row["per_sign_lighting"]
    assert lit["images"] == row["images"] and 0 <= lit["targeted_success"] <= 1
    assert lit["gain_p10"] <= lit["gain_median"] <= lit["gain_p90"] and "conditions" in lit
    plain = json.loads(invoke(*args, "--json").out)["models"]["gtsrb-cnn"]
    assert "per_sign_lighting" not in plain and plain["targeted_success"] == row["targeted_success"]


def test_bad_lighting_data_is_one_line():
    r = invoke(
        "evaluate", "--patch", "zoo:gtsrb-cnn/stop-yield", "--data", "demo", "--per-sign-lighting",
        "--lighting-data", "gtsrb:nope", "--conditions", "none",
    )  # fmt: skip
    assert_contract(r)
    assert r.code == 2 and "gtsrb:nope" in r.err_lines[0]
