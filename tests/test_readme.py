"""The README's module map matches the tree: every path it names exists, every module is named."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = {"cloudseam_site/": "cloudseam_site", "cloudseam_site/accounts/": "cloudseam_site/accounts",
            "machines_app/": "machines_app", "stacks/": "stacks"}
NOT_LISTED = {"__init__.py", "apps.py", "migrations", "templates", "__pycache__", "accounts"}


def module_map() -> dict[str, str]:
    """Each package's part of the map (its heading to the next one), by package folder."""
    readme = (ROOT / "README.md").read_text()
    text = readme[readme.index("## Module map"):]
    text = text[:text.index("\n## ", 5)] if "\n## " in text[5:] else text
    parts = re.split(r"\*\*`([^`]+)`", text)
    return {SECTIONS[parts[i]]: parts[i + 1] for i in range(1, len(parts) - 1, 2) if parts[i] in SECTIONS}


def test_it_finds_a_part_for_each_package():
    assert set(module_map()) == set(SECTIONS.values())


def test_it_names_only_paths_that_exist():
    missing = []
    for package, part in module_map().items():
        for row in re.findall(r"^\| `[^|]+\|", part, flags=re.M):
            for name in re.findall(r"`([^`]+)`", row):
                if not (ROOT / package / name).exists():
                    missing.append(f"{package}/{name}")
    assert not missing, f"the module map names paths that do not exist: {missing}"


def test_it_names_every_module_of_each_package():
    unnamed = []
    for package, part in module_map().items():
        for path in sorted((ROOT / package).iterdir()):
            if path.name in NOT_LISTED or path.suffix not in (".py", "") or path.name.startswith("."):
                continue
            shown = f"`{path.name}/`" if path.is_dir() else f"`{path.name}`"
            if shown not in part and f"`{path.name}/" not in part:
                unnamed.append(f"{package}/{path.name}")
    assert not unnamed, f"modules missing from the README's module map: {unnamed}"


def test_it_names_every_module_of_each_sub_package():
    unnamed = []
    for package, part in module_map().items():
        for sub in sorted(p for p in (ROOT / package).iterdir() if p.is_dir() and (p / "__init__.py").exists()):
            if sub.name in NOT_LISTED:
                continue
            row = next((line for line in part.splitlines() if f"`{sub.name}/`" in line), "")
            for module in sorted(sub.glob("*.py")):
                if module.name != "__init__.py" and module.stem not in row:
                    unnamed.append(f"{package}/{sub.name}/{module.name}")
    assert not unnamed, f"modules missing from their package's row in the module map: {unnamed}"
