"""The public names come from one place: each subpackage's ``__all__``, re-exported by the
package; a method module left out of the explainers' index is named with the line to add."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import salience
import salience.explainers as explainers

SUBPACKAGES = ["adapters", "attribution", "domains", "errors", "explainers", "layout", "targets"]


def _explainer_modules() -> list[str]:
    return [
        info.name
        for info in pkgutil.iter_modules(explainers.__path__)
        if not info.name.startswith("_") and info.name not in ("backward_rules", "lrp")
    ]


@pytest.mark.parametrize("module", _explainer_modules())
def test_every_explainer_module_is_in_the_index(module):
    mod = importlib.import_module(f"salience.explainers.{module}")
    assert hasattr(mod, "__all__"), f"salience/explainers/{module}.py needs an __all__ of its public names"
    missing = [n for n in mod.__all__ if n not in explainers.__all__]
    assert not missing, (
        f"salience/explainers/__init__.py does not export {missing}: add "
        f"`from .{module} import {', '.join(mod.__all__)}` and the names to its __all__"
    )
    for name in mod.__all__:
        assert getattr(explainers, name) is getattr(mod, name)


def test_every_explainer_class_defined_in_the_package_is_public():
    public = set(explainers.__all__)
    for module in _explainer_modules():
        mod = importlib.import_module(f"salience.explainers.{module}")
        for name, obj in vars(mod).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, salience.Explainer)
                and obj.__module__ == mod.__name__
                and not name.startswith("_")
            ):
                assert name in public, f"{mod.__name__}.{name} is an explainer missing from __all__"


@pytest.mark.parametrize("sub", SUBPACKAGES)
def test_package_reexports_each_subpackage_all(sub):
    mod = importlib.import_module(f"salience.{sub}")
    for name in mod.__all__:
        assert name in salience.__all__, f"salience.{sub}.{name} is not re-exported by salience"
        assert getattr(salience, name) is getattr(mod, name)


def test_package_all_resolves_without_duplicates():
    assert len(salience.__all__) == len(set(salience.__all__)), "a name is exported twice"
    for name in salience.__all__:
        assert hasattr(salience, name), name


def test_engine_is_the_extension_api():
    import salience.engine as engine

    for name in engine.__all__:
        assert hasattr(engine, name), name
    assert engine.Explainer is salience.Explainer
    assert engine.ScoreFunction.__module__ == "salience.engine.score"
    # the method a new explainer implements is public and documented
    assert engine.Explainer.attribute.__doc__ and "one method" in engine.Explainer.attribute.__doc__
