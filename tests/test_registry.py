"""The generic registry: registration, listing, specs read from signatures and docstrings, creation, option parsing
and its errors, and lazy discovery of a package's modules."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from patchscope.errors import PatchscopeError
from patchscope.registry import OptionSpec, Registry


def _widgets() -> Registry:
    reg = Registry("widget", meta={"fast": False})

    @reg.register("round-widget", fast=True)
    class Round:
        """A round widget with ``radius``.

        More text that is not the summary.

        Args:
            radius: the radius in px,
                a whole number.
            label: what it says.
        """

        def __init__(self, model: object, radius: int = 3, label: str = "w", device: str = "cpu") -> None:
            self.model, self.radius, self.label, self.device = model, radius, label, device

    @reg.register("square-widget")
    def square(
        model: object,
        side: float = 1.0,
        hollow: bool = False,
        sizes: tuple[int, ...] = (1, 2),
        limit: int | None = None,
    ) -> dict[str, object]:
        """A square widget (:class:`~x.Square`)."""
        return {"model": model, "side": side, "hollow": hollow, "sizes": sizes, "limit": limit}

    return reg


def test_names_are_listed_sorted_and_filtered_by_pattern():
    reg = _widgets()
    assert reg.list() == ["round-widget", "square-widget"]
    assert reg.list("sq*") == ["square-widget"] and reg.list("*-widget") == reg.list() and reg.list("nope*") == []
    assert "round-widget" in reg and "nope" not in reg


def test_a_spec_reads_options_from_the_signature_and_docs_from_args():
    spec = _widgets().spec("round-widget")
    assert spec.name == "round-widget" and spec.kind == "widget"
    assert spec.summary == "A round widget with radius."  # first sentence, reST markup stripped
    assert spec.meta == {"fast": True}
    assert spec.options == (  # model and device are reserved: the caller supplies them
        OptionSpec("radius", "int", 3, "the radius in px, a whole number."),
        OptionSpec("label", "str", "w", "what it says."),
    )
    assert spec.defaults == {"radius": 3, "label": "w"} and spec.takes("device") and not spec.takes("other")
    square = _widgets().spec("square-widget")
    assert square.meta == {"fast": False} and square.summary == "A square widget (x.Square)."
    assert [(o.name, o.type, o.doc) for o in square.options][3] == ("limit", "int | None", "")


def test_create_builds_with_options_and_refuses_one_it_does_not_take():
    reg = _widgets()
    w = reg.create("round-widget", "m", radius=5)
    assert (w.model, w.radius, w.label) == ("m", 5, "w")
    with pytest.raises(PatchscopeError) as e:
        reg.create("round-widget", "m", side=2)
    assert e.value.params[:2] == ("side", "widget") and "its options: radius, label" in str(e.value)


def test_parse_converts_each_value_to_its_option_type():
    reg = _widgets()
    got = reg.parse("square-widget", ["side=0.5", "hollow=yes", "sizes=3,4", "limit=7"])
    assert got == {"side": 0.5, "hollow": True, "sizes": (3, 4), "limit": 7}
    assert type(got["side"]) is float and type(got["limit"]) is int
    for text, value in [("true", True), ("1", True), ("yes", True), ("false", False), ("0", False), ("No", False)]:
        assert reg.parse("square-widget", [f"hollow={text}"]) == {"hollow": value}
    assert reg.parse("round-widget", [" radius = 4 ", "label=a=b"]) == {"radius": 4, "label": "a=b"}
    assert reg.parse("round-widget", []) == {}


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("nope=1", ["option nope", "has no such option", "radius, label"]),
        ("radius=big", ["option radius='big'", "not a valid int"]),
        ("radius=1.5", ["option radius='1.5'"]),
        ("radius", ["give KEY=VALUE", "radius=3"]),
        ("=3", ["give KEY=VALUE"]),
    ],
)
def test_unknown_keys_and_bad_values_name_the_option(text, needles):
    with pytest.raises(PatchscopeError) as e:
        _widgets().parse("round-widget", [text])
    assert e.value.params == ("option",)
    for needle in needles:
        assert needle in str(e.value), str(e.value)


def test_a_bool_takes_only_its_words():
    with pytest.raises(PatchscopeError, match="not a valid bool"):
        _widgets().parse("square-widget", ["hollow=maybe"])


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(PatchscopeError) as e:
        _widgets().spec("oval-widget")
    assert str(e.value) == "unknown widget 'oval-widget': choose from round-widget, square-widget"
    assert e.value.params == ("widget",)
    with pytest.raises(PatchscopeError):
        _widgets().create("oval-widget")


def test_a_name_is_registered_once_and_in_kebab_case():
    reg = _widgets()
    build = reg.spec("round-widget").build
    assert reg.register("round-widget")(build) is build  # the same object again (a module imported twice): fine
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("round-widget")(lambda model: None)
    for bad in ("snake_case", "Upper", "trailing-", "two  words"):
        with pytest.raises(ValueError, match="kebab-case"):
            reg.register(bad)
    assert reg.name_of(build) == "round-widget" and reg.name_of(print) is None
    reg.remove("round-widget")
    assert reg.list() == ["square-widget"]


def test_discovery_imports_every_module_of_the_package_on_first_read(tmp_path: Path, monkeypatch):
    pkg = tmp_path / "widgetplugins"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from patchscope.registry import Registry\nREG = Registry('gadget', package='widgetplugins')\n"
    )
    for name in ("alpha", "beta"):
        (pkg / f"{name}.py").write_text(
            textwrap.dedent(
                f"""
                from widgetplugins import REG

                @REG.register("{name}-gadget")
                def make(size: int = 1):
                    '''The {name} gadget.'''
                    return size
                """
            )
        )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        from widgetplugins import REG  # type: ignore[import-not-found]

        assert "widgetplugins.alpha" not in sys.modules  # nothing imported before the registry is read
        assert REG.list() == ["alpha-gadget", "beta-gadget"]
        assert {"widgetplugins.alpha", "widgetplugins.beta"} <= set(sys.modules)
        assert REG.create("beta-gadget", size=4) == 4 and REG.spec("alpha-gadget").summary == "The alpha gadget."
    finally:
        for name in [m for m in sys.modules if m.split(".")[0] == "widgetplugins"]:
            del sys.modules[name]


def test_the_four_registries_use_one_naming_style():
    from patchscope.attacks.registry import ATTACKS
    from patchscope.defenses.registry import CERTIFIERS, DEFENSES
    from patchscope.models.archs import ARCHS
    from patchscope.registry import NAME

    for reg in (ARCHS, ATTACKS, DEFENSES, CERTIFIERS):
        assert reg.list() and all(NAME.fullmatch(n) for n in reg.list()), reg.kind
