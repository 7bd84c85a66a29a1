"""One formatter for what a person reads: rates as percentages with one decimal, classes by name, no Python reprs."""

from __future__ import annotations

import re
from pathlib import Path

import patchscope
from patchscope.formatting import an, class_label, is_rate, pct, value_text

PACKAGE = Path(patchscope.__file__).parent


def test_percentages_are_formatted_in_one_place():
    """No module but patchscope.formatting writes its own percentage format (``f"{v:.1%}"``)."""
    spec = re.compile(r"\{[^{}]*:[^{}]*%\}")
    others = [
        f"{p.relative_to(PACKAGE)}:{i}"
        for p in PACKAGE.rglob("*.py")
        if p.name != "formatting.py"
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if spec.search(line)
    ]
    assert not others, others


def test_rates_numbers_flags_and_classes():
    assert [pct(0.47593), pct(1), pct(None)] == ["47.6%", "100.0%", "-"]
    assert value_text(0.625, "certified_accuracy") == "62.5%" and value_text(0.625, "lr") == "0.625"
    assert value_text(20, "patch.defended.images") == "20"  # a count under a share's name is no share
    assert value_text(1.5, "accuracy") == "1.5"  # outside [0, 1]: not a share, whatever its name
    assert [value_text(None), value_text(True), value_text(False)] == ["-", "yes", "no"]
    assert is_rate("accuracy.gtsrb:test") and not is_rate("batch_size") and not is_rate("demo_accuracy_images")
    assert class_label("yield", 13) == "yield (13)" and class_label("13", 13) == "13"
    assert [an("8.0% patch"), an("11% patch"), an("110% patch"), an("1.5% patch")] == [
        "an 8.0% patch",
        "an 11% patch",
        "a 110% patch",
        "a 1.5% patch",
    ]
