"""The layout's rules, checked on the source: imports run downward only, and nothing edits sys.path.

Layers, top to bottom (docs/architecture.md):
    entry points (train.py, dataset_scripts/*.py)  ->  hilbert_app.cli  ->  hilbert_app.training
    ->  hilbert_app.features  ->  hilbert_app.corpus  ->  shared leaves (hilbert_app.encoders, .hub, .safe_write,
    .output_lock, .errors, .whisper_ct2, .model_cards)  ->  modeling_hilbert (the Hub-shipped library: imports none
    of the above).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LEAVES = ("console", "encoders", "folds", "hub", "safe_write", "errors", "output_lock", "whisper_ct2", "model_cards")
# Lower number = lower layer. A module may import from its own layer or below, never above.
RANKS = {
    "modeling_hilbert": 0,
    "hilbert_app": 1,
    **{f"hilbert_app.{leaf}": 1 for leaf in LEAVES},
    "hilbert_app.corpus": 2,
    "hilbert_app.features": 3,
    "hilbert_app.training": 4,
    "hilbert_app.cli": 5,
}


def layer(module: str) -> str | None:
    """The layer a dotted module name belongs to (the longest matching prefix), None for third-party modules."""
    best = None
    for name in RANKS:
        if module == name or module.startswith(name + "."):
            if best is None or len(name) > len(best):
                best = name
    return best


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "model_cards":  # installed as hilbert_app.model_cards
        parts = ["hilbert_app", *parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path, source: str | None = None, module: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in a file, relative imports resolved against its package."""
    tree = ast.parse(source if source is not None else path.read_text(encoding="utf-8"))
    module = module or module_name(path)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((node.lineno, target))
            out += [
                (node.lineno, f"{target}.{alias.name}")
                for alias in node.names
                if layer(f"{target}.{alias.name}") and layer(f"{target}.{alias.name}") != layer(target)
            ]
    return out


def package_files() -> list[Path]:
    files = sorted((REPO / "modeling_hilbert").glob("*.py")) + sorted((REPO / "hilbert_app").rglob("*.py"))
    return files + sorted((REPO / "model_cards").glob("*.py"))


def upward_imports(path: Path, source: str | None = None, module: str | None = None) -> list[str]:
    own = layer(module or module_name(path))
    assert own is not None, f"{path} is in no layer: add it to RANKS and docs/architecture.md"
    return [
        f"line {line}: {target}"
        for line, target in imported_modules(path, source, module)
        if layer(target) is not None and RANKS[layer(target)] > RANKS[own]
    ]


def test_the_checker_sees_violations():
    """The rule itself can fail: absolute, relative and from-imports upward are all reported."""
    fake = REPO / "hilbert_app" / "features" / "fake.py"
    assert upward_imports(fake, "from hilbert_app.training.run import run\n") == ["line 1: hilbert_app.training.run"]
    assert upward_imports(fake, "from ..cli import train\n") == ["line 1: hilbert_app.cli"]
    assert upward_imports(fake, "from hilbert_app import cli\n") == ["line 1: hilbert_app.cli"]
    assert upward_imports(fake, "import hilbert_app.corpus.build\nfrom . import store\n") == []
    library = REPO / "modeling_hilbert" / "fake.py"
    assert upward_imports(library, "from hilbert_app.errors import UserError\n") == ["line 1: hilbert_app.errors"]


@pytest.mark.parametrize("path", package_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_imports_run_downward_only(path):
    upward = upward_imports(path)
    assert not upward, f"{path.relative_to(REPO)} ({layer(module_name(path))}) imports from a higher layer: {upward}"


def test_the_shipped_library_imports_only_its_siblings_and_its_dependencies():
    """modeling_hilbert ships to the Hub alone: no import of hilbert_app, tests or the entry points."""
    for path in sorted((REPO / "modeling_hilbert").glob("*.py")):
        for line, target in imported_modules(path):
            assert not target.startswith(("hilbert_app", "train", "dataset_scripts", "tests")), (
                f"{path}:{line} {target}"
            )


def test_entry_points_only_call_the_cli():
    """train.py and dataset_scripts/*.py parse nothing themselves: each imports one hilbert_app.cli main."""
    scripts = [REPO / "train.py", *sorted((REPO / "dataset_scripts").glob("*.py"))]
    assert len(scripts) >= 4
    for script in scripts:
        targets = {t for _, t in imported_modules(script)} - {"sys"}
        assert targets and all(t.startswith("hilbert_app.cli.") for t in targets), (script, targets)
        assert len(script.read_text(encoding="utf-8").splitlines()) <= 12, f"{script} is not a thin entry point"


def test_nothing_edits_sys_path():
    """The packages are installed (scripts/setup.sh): no project file prepends the repository to sys.path."""
    files = package_files() + [
        REPO / "train.py",
        *sorted((REPO / "dataset_scripts").glob("*.py")),
        *sorted((REPO / "benchmarks").glob("*.py")),
        *sorted((REPO / "scripts").glob("*.py")),
        *sorted((REPO / "tests").glob("test_*.py")),
        REPO / "tests" / "conftest.py",
    ]
    offenders = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "insert"
                and isinstance(node.func.value, ast.Attribute)
                and node.func.value.attr == "path"
            ):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders, offenders


def test_every_guarantee_names_tests_that_exist():
    """docs/guarantees.md promises only what is tested: each bullet names at least one test (`file::test`, or
    `…::test` for the file named before it), and every named test exists (a prefix ending in `*` or `_` names a
    family of tests)."""
    text = (REPO / "docs" / "guarantees.md").read_text(encoding="utf-8")
    bullets = ["".join(block) for block in _bullets(text)]
    assert len(bullets) > 30
    defined = {}
    for path in sorted((REPO / "tests").glob("test_*.py")):
        defined[path.name] = {
            node.name
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
        }
    missing, untested, current = [], [], None
    for bullet in bullets:
        references = re.findall(r"`((?:test_\w+\.py)|…)::(test_\w*\*?|…\w*\*?)`", bullet)
        if not references:
            untested.append(bullet[:80])
        for file, name in references:
            current = file if file != "…" else current
            if name.startswith("…"):  # `…_processor`: the previous test's name with another ending
                continue
            prefix = name.rstrip("*")
            found = any(t == name or (name.endswith(("*", "_")) and t.startswith(prefix)) for t in defined[current])
            if not found:
                missing.append(f"{current}::{name}")
    assert not untested, f"guarantees without a test: {untested}"
    assert not missing, f"guarantees name tests that do not exist: {missing}"


def _bullets(text: str) -> list[str]:
    """The Markdown bullets: a "- " line and its indented continuation lines."""
    blocks, current = [], None
    for line in text.splitlines():
        if line.startswith("- "):
            current = [line]
            blocks.append(current)
        elif line.startswith("  ") and current is not None:
            current.append(" " + line.strip())
        else:
            current = None
    return blocks
