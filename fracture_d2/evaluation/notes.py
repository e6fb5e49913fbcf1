"""The ``notes`` of a report: why a value is absent, grouped so that they stay readable."""

from __future__ import annotations

from collections import defaultdict


class Notes(list):
    """A list of messages, plus two kinds that are grouped when :meth:`render` ed:
    per-body-part results left out, and bootstrap resamples left out of a CI."""

    def __init__(self, *args):
        super().__init__(*args)
        self._skipped = defaultdict(list)
        self._dropped = {}

    def skipped(self, section: str, part: str, reason: str) -> None:
        """``section`` for body part ``part`` is left out because of ``reason``."""
        self._skipped[section].append(f"{part} ({reason})")

    def dropped(self, scope: str, n: int, total: int) -> None:
        """``n`` of ``total`` resamples gave no value for a CI in ``scope``."""
        self._dropped[scope] = (max(n, self._dropped.get(scope, (0, total))[0]), total)

    def render(self) -> list[str]:
        out = list(self)
        for section, items in self._skipped.items():
            out.append(f"{section}: left out for {', '.join(items)}")
        if self._dropped:
            out.append(
                "bootstrap: resamples that drew no positive (or no negative) give no value and "
                "are left out of these CIs: "
                + ", ".join(f"{k} {n} of {t}" for k, (n, t) in self._dropped.items())
            )
        return out
