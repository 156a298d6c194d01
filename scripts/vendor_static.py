"""Copy the browser builds CloudSeam's pages use from node_modules/ into static/vendor/.

`make setup` runs `npm install` (versions pinned in package.json) and then this script, so the
libraries come from the npm registry and are never pasted into the repository; static/vendor/ is
git-ignored and served by `serve` like every other static file. Only what a page loads is copied
(no source maps, no CommonJS builds), which keeps the folder a few megabytes.

Exits non-zero with a plain sentence when a file is missing, e.g. when `npm install` did not run.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "node_modules"
VENDOR = ROOT / "static" / "vendor"


@dataclass(frozen=True)
class Copy:
    """One file, or every file of a folder matching `pattern`, copied to `target` under VENDOR."""

    source: str  # relative to node_modules/
    target: str  # relative to static/vendor/
    pattern: str | None = None  # set for folders


COPIES = (
    # Mermaid's ES module build loads its diagram types lazily from the chunk folder next to it.
    Copy("mermaid/dist/mermaid.esm.min.mjs", "mermaid/mermaid.esm.min.mjs"),
    Copy("mermaid/dist/chunks/mermaid.esm.min", "mermaid/chunks/mermaid.esm.min", pattern="*.mjs"),
    Copy("mermaid/LICENSE", "mermaid/LICENSE"),
    # Graphviz compiled to WebAssembly (inlined in the module): draws DOT when `dot` is missing.
    Copy("@viz-js/viz/dist/viz.js", "viz/viz.js"),
    Copy("@viz-js/viz/package.json", "viz/package.json"),
)


def copy_one(item: Copy, node_modules: Path, vendor: Path) -> int:
    """Copy one entry; returns the number of files copied. Raises FileNotFoundError when missing."""
    source, target = node_modules / item.source, vendor / item.target
    if item.pattern is None:
        if not source.is_file():
            raise FileNotFoundError(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return 1
    if not source.is_dir():
        raise FileNotFoundError(source)
    if target.exists():
        shutil.rmtree(target)  # drop chunks of an older version
    target.mkdir(parents=True)
    files = sorted(source.glob(item.pattern))
    for path in files:
        shutil.copyfile(path, target / path.name)
    return len(files)


def main(node_modules: Path = NODE_MODULES, vendor: Path = VENDOR) -> int:
    """Copy every entry of COPIES; 0 on success, 1 with a message naming the missing file."""
    copied = 0
    for item in COPIES:
        try:
            copied += copy_one(item, node_modules, vendor)
        except FileNotFoundError as exc:
            print(f"vendor_static: {exc.args[0]} is missing; run `npm install` first (make setup does).",
                  file=sys.stderr)
            return 1
    shown = vendor.relative_to(ROOT) if vendor.is_relative_to(ROOT) else vendor
    print(f"vendor_static: copied {copied} files into {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
