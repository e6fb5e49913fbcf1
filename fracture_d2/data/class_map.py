"""Class mapping for importers: keep some classes, rename them, merge several into one.

A spec is a comma-separated list of ``source=target`` or ``source`` (kept under its own name),
or the path of a JSON/YAML file holding a ``{source: target}`` mapping (a null target drops the
class). Classes not named are dropped, and every dropped box is counted
(``box_class_not_kept``). Output classes are the targets in the order they first appear, so
``fracture`` keeps category id 1 when it comes first. Examples::

    fracture                                   keep only fracture (GRAZPEDWRI-DX, Roboflow)
    fractured=fracture                         rename (FracAtlas's own class name)
    fracture,boneanomaly=fracture              merge boneanomaly into fracture
"""

from __future__ import annotations

from pathlib import Path

from .errors import DataError


class ClassMap:
    """Map source class names to output class names (None: drop)."""

    def __init__(self, mapping: dict[str, str | None] | None = None, source: str = "--class-map"):
        self.mapping = dict(mapping) if mapping is not None else None
        self.source = source

    @classmethod
    def parse(cls, spec: str | None) -> ClassMap:
        """Build from a spec string or a JSON/YAML file path (see the module docstring)."""
        if not spec:
            return cls(None)
        path = Path(spec)
        if path.suffix.lower() in (".json", ".yaml", ".yml") and path.is_file():
            import yaml  # JSON is YAML too

            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise DataError(path, "class map file must hold a {source: target} mapping")
            return cls(
                {str(k): (None if v is None else str(v)) for k, v in data.items()}, str(path)
            )
        mapping = {}
        for item in spec.split(","):
            src, _, dst = item.partition("=")
            src, dst = src.strip(), (dst.strip() or src.strip())
            if not src:
                raise DataError("--class-map", f"empty class name in {spec!r}")
            mapping[src] = dst
        return cls(mapping)

    def check(self, known) -> None:
        """Refuse a map naming a class the data does not have (most often a typo)."""
        if self.mapping is None:
            return
        unknown = sorted(set(self.mapping) - set(known))
        if unknown:
            raise DataError(
                self.source, f"classes {unknown} are not in the data; it has {sorted(set(known))}"
            )

    def __call__(self, name: str) -> str | None:
        """The output class of ``name``, or None if it is dropped."""
        return name if self.mapping is None else self.mapping.get(name)

    def classes(self, source_classes) -> list[str]:
        """Output class names, in order: the map's targets, or the source classes as given."""
        targets = source_classes if self.mapping is None else self.mapping.values()
        return list(dict.fromkeys(t for t in targets if t is not None))


def fracture_first(labels) -> list[str]:
    """Default class order: ``fracture`` first (category id 1, as single-class configs expect),
    then the others sorted; ``["fracture"]`` when there are none."""
    labels = set(labels)
    others = sorted(labels - {"fracture"})
    return ["fracture", *others] if "fracture" in labels or not others else others
