"""A machine's diagram as the pages show it (machine pages and stack pages alike).

The Graphviz SVG is drawn on the server with `dot` and cached per machine version (and highlighted
state), because a layout costs a subprocess and versions never change. Without `dot` the page
carries the DOT text and the browser draws it (@viz-js/viz).
"""

from __future__ import annotations

import hashlib
import logging

from django.core.cache import cache
from django.utils.safestring import mark_safe

from machines_app import diagrams
from machines_app.models import MachineVersion

log = logging.getLogger(__name__)

SVG_CACHE_SECONDS = 24 * 3600


def _path_key(path: diagrams.RunPath | None) -> str:
    if path is None:
        return ""
    return ":" + hashlib.sha256(path.cache_key().encode()).hexdigest()[:20]


def machine_svg(version: MachineVersion, highlight: str | None = None,
                path: diagrams.RunPath | None = None) -> str | None:
    """Graphviz SVG of a version, or None when `dot` is missing or failed (the browser draws it)."""
    if not diagrams.dot_available():
        return None
    key = f"cloudseam:svg:{version.content_hash}:{highlight or ''}{_path_key(path)}"
    svg = cache.get(key)
    if svg is None:
        try:
            svg = diagrams.render_svg(diagrams.to_dot(version.spec, highlight=highlight, path=path))
        except diagrams.DiagramError:
            log.warning("could not draw machine %s v%s with dot", version.machine_id, version.number, exc_info=True)
            return None
        cache.set(key, svg, SVG_CACHE_SECONDS)
    return svg


def diagram_css(scope: str = ".diagram svg", path: bool = False) -> str:
    """Node colours as CSS (so moving `current` restyles a node) plus the task-status colours."""
    rules = [diagrams.svg_css(scope)] + ([diagrams.path_css(scope)] if path else [])
    for status, colours in diagrams.TASK_COLOURS.items():
        cls = f"task-{status.lower()}"
        rules.append(f"{scope} rect.task-bg.{cls} {{ fill: {colours.fill}; stroke: {colours.stroke}; }}")
        rules.append(f"{scope} text.{cls} {{ fill: {colours.text}; }}")
    return "\n".join(rules)


def diagram_context(version: MachineVersion, highlight: str | None = None,
                    path: diagrams.RunPath | None = None) -> dict:
    """Template context for a diagram: server SVG when possible, DOT for the browser otherwise.

    A stack's page passes its `path` (even an empty one): the path is drawn, the legend explains it;
    a machine page passes none and its legend lists only what can appear there.
    """
    svg = machine_svg(version, highlight, path)
    return {
        # Graphviz's own output from a validated machine whose labels `diagrams` escapes; not user HTML.
        "svg": mark_safe(svg) if svg else None,
        "dot": None if svg else diagrams.to_dot(version.spec, highlight=highlight, path=path),
        "diagram_css": diagram_css(path=path is not None),
        "legend": diagrams.legend(stack=path is not None),
    }
