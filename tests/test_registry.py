"""The generic plug-in registry: names, aliases, metadata, lazy entries, entry points."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from whetstone.errors import ConfigError
from whetstone.registry import Registry


def install_plugin(root: Path, group: str, lines: dict[str, str], module: str) -> None:
    """A distribution ``plug`` in ``root`` (on sys.path): its module and its entry points."""
    (root / "plug_module.py").write_text(module)
    info = root / "plug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plug\nVersion: 0.1\n")
    points = "".join(f"{name} = {target}\n" for name, target in lines.items())
    (info / "entry_points.txt").write_text(f"[{group}]\n{points}")


@pytest.fixture
def plugin_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("plug_module", None)


def test_names_aliases_and_metadata() -> None:
    reg: Registry[int] = Registry("things")
    reg.register("one", 1, aliases=("uno",), note="first")
    reg.register("two", 2)
    assert reg.names() == ["one", "two"]
    assert reg.get("uno") == 1 and reg.canonical("uno") == "one"
    assert reg.aliases() == {"uno": "one"}
    assert reg.metadata("uno") == {"note": "first"} and reg.metadata("two") == {}
    assert "uno" in reg and "three" not in reg
    assert list(reg.items()) == [("one", 1), ("two", 2)]


def test_the_decorator_registers_and_returns_the_object() -> None:
    reg: Registry[type] = Registry("things")

    @reg.decorator("widget", aliases=("w",), fast=True)
    class Widget:
        pass

    assert reg.get("w") is Widget and reg.metadata("widget") == {"fast": True}


def test_a_name_or_alias_taken_twice_is_refused() -> None:
    reg: Registry[int] = Registry("things")
    reg.register("a", 1, aliases=("b",))
    for name, aliases in (("a", ()), ("b", ()), ("c", ("a",)), ("d", ("d",))):
        with pytest.raises(ValueError, match="registered twice"):
            reg.register(name, 9, aliases=aliases)


def test_a_lazy_entry_is_imported_on_first_use(plugin_root: Path) -> None:
    (plugin_root / "plug_module.py").write_text("class Thing:\n    class Inner:\n        x = 3\n")
    reg: Registry[type] = Registry("things")
    reg.register("inner", "plug_module:Thing.Inner")
    assert "plug_module" not in sys.modules
    assert reg.get("inner").x == 3  # type: ignore[attr-defined]
    assert "plug_module" in sys.modules


def test_unknown_names_get_a_did_you_mean_naming_the_kind() -> None:
    reg: Registry[int] = Registry("scorers")
    reg.register("loglikelihood", 1)
    hint = r"unknown scorers 'logliklihood' \(did you mean 'loglikelihood'\?\)"
    with pytest.raises(ConfigError, match=hint):
        reg.get("logliklihood")
    with pytest.raises(ConfigError, match=r"unknown scorers 'zzz'; known: loglikelihood"):
        reg.get("zzz")


def test_entry_points_are_loaded_once_and_registered_as_is(plugin_root: Path) -> None:
    module = "def make():\n    return 7\nVALUE = 5\n"
    group = "whetstone.things_test"
    points = {"made": "plug_module:make", "value": "plug_module:VALUE"}
    install_plugin(plugin_root, group, points, module)
    reg: Registry[object] = Registry("things_test")
    reg.register("builtin", 1)
    assert "plug_module" not in sys.modules  # nothing read before the registry is asked
    assert reg.names() == ["builtin", "made", "value"]
    assert reg.get("value") == 5 and callable(reg.get("made"))  # a factory stays a factory
    assert reg.metadata("value") == {"entry_point": "plug_module:VALUE"}
    (plugin_root / "plug-0.1.dist-info" / "entry_points.txt").write_text(f"[{group}]\n")
    assert "value" in reg  # read once: a later change of the installed plug-ins is not seen


def test_an_entry_point_that_takes_a_builtin_name_is_skipped_with_a_warning(
    plugin_root: Path,
) -> None:
    install_plugin(plugin_root, "whetstone.clash_test", {"builtin": "plug_module:X"}, "X = 2\n")
    reg: Registry[int] = Registry("clash_test")
    reg.register("builtin", 1)
    with pytest.warns(UserWarning, match="'plug_module:X' skipped: clash_test 'builtin'"):
        assert reg.get("builtin") == 1


def test_aliases_of_reads_the_aliases_a_plugin_declares(plugin_root: Path) -> None:
    module = "class Spec:\n    aliases = ('short',)\nSPEC = Spec()\n"
    install_plugin(plugin_root, "whetstone.alias_test", {"long_name": "plug_module:SPEC"}, module)
    reg: Registry[object] = Registry("alias_test", aliases_of=lambda obj: obj.aliases)
    assert reg.canonical("short") == "long_name"
