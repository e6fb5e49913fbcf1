"""The package's shape: no import cycles (lazy imports included) between modules or between
subpackages, and datasets registered only by an explicit call."""

import subprocess
import sys

import grimp

from conftest import REPO


def _cycles(graph) -> list[str]:
    """Each import of a module B by a module A from which a chain leads back to A."""
    found = []
    for importer in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(importer):
            if "." not in importer or "." not in imported or importer == imported:
                continue  # the root package holds nothing but the version
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back:
                found.append(" -> ".join((importer, *back)))
    return found


def test_no_import_cycles_between_modules():
    assert _cycles(grimp.build_graph("fracture_d2")) == []


def test_no_import_cycles_between_subpackages():
    graph = grimp.build_graph("fracture_d2")
    for package in graph.find_children("fracture_d2"):
        if graph.find_children(package):
            graph.squash_module(package)
    assert _cycles(graph) == []


def test_a_lazy_import_cycle_is_found(tmp_path, monkeypatch):
    """The check above can fail: an import inside a function closes a cycle too."""
    pkg = tmp_path / "cyclic_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n")
    (pkg / "c.py").write_text("from . import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _cycles(grimp.build_graph("cyclic_pkg", cache_dir=None)) == [
        "cyclic_pkg.a -> cyclic_pkg.b -> cyclic_pkg.a",
        "cyclic_pkg.b -> cyclic_pkg.a -> cyclic_pkg.b",
    ]


def test_datasets_registered_by_an_explicit_call_only(datasets_root):
    code = (
        "import detectron2.data, fracture_d2.data, fracture_d2.engine, fracture_d2.inference\n"
        "from detectron2.data import DatasetCatalog\n"
        "before = 'mura_synthetic_train' in DatasetCatalog\n"
        "fracture_d2.data.register_all()\n"
        "print(before, 'mura_synthetic_train' in DatasetCatalog)\n"
    )
    env = {"DETECTRON2_DATASETS": str(datasets_root), "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "True"]
