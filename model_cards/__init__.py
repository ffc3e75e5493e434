"""The card templates (Markdown with `$placeholders`), installed as the package data `hilbert_app.model_cards`.

`template(name)` reads one, from the source tree or from an installed (non-editable) package alike.
"""

from importlib.resources import files


def template(name: str) -> str:
    """The text of `model_cards/<name>` (e.g. "model_card_template.md")."""
    return files(__name__).joinpath(name).read_text(encoding="utf-8")
