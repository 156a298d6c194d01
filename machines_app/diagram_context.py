"""A machine's diagram as the pages show it (machine pages and stack pages alike).

The Graphviz SVG is drawn on the server with `dot` and cached per machine version (and highlighted
state), because a layout costs a subprocess and versions never change. Without `dot` the page
carries the DOT text and the browser draws it (@viz-js/viz).
"""

from __future__ import annotations

import logging

from django.core.cache import cache
from django.utils.safestring import mark_safe

from machines_app import diagrams
from machines_app.models import MachineVersion

log = logging.getLogger(__name__)

SVG_CACHE_SECONDS = 24 * 3600


def machine_svg(version: MachineVersion, highlight: str | None = None) -> str | None:
    """Graphviz SVG of a version, or None when `dot` is missing or failed (the browser draws it)."""
    if not diagrams.dot_available():
        return None
    key = f"cloudseam:svg:{version.content_hash}:{highlight or ''}"
    svg = cache.get(key)
    if svg is None:
        try:
            svg = diagrams.render_svg(diagrams.to_dot(version.spec, highlight=highlight))
        except diagrams.DiagramError:
            log.warning("could not draw machine %s v%s with dot", version.machine_id, version.number, exc_info=True)
            return None
        cache.set(key, svg, SVG_CACHE_SECONDS)
    return svg


def diagram_css(scope: str = ".diagram svg") -> str:
    """Node colours as CSS (so moving `current` restyles a node) plus the task-status colours."""
    rules = [diagrams.svg_css(scope)]
    for status, colours in diagrams.TASK_COLOURS.items():
        cls = f"task-{status.lower()}"
        rules.append(f"{scope} rect.task-bg.{cls} {{ fill: {colours.fill}; stroke: {colours.stroke}; }}")
        rules.append(f"{scope} text.{cls} {{ fill: {colours.text}; }}")
    return "\n".join(rules)


def diagram_context(version: MachineVersion, highlight: str | None = None) -> dict:
    """Template context for a diagram: server SVG when possible, DOT for the browser otherwise."""
    svg = machine_svg(version, highlight)
    return {
        # Graphviz's own output from a validated machine whose labels `diagrams` escapes; not user HTML.
        "svg": mark_safe(svg) if svg else None,
        "dot": None if svg else diagrams.to_dot(version.spec, highlight=highlight),
        "diagram_css": diagram_css(),
        "legend": diagrams.legend(),
    }
