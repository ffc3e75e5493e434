"""Pushes stay private unless the user says `--public`, also when the repository already exists.

`push_to_hub(private=...)` and `create_repo(private=..., exist_ok=True)` set the visibility only when they create a
repository: pushing a private corpus, its features or a model trained on it into an existing *public* repository
would publish it. Every HILBERT push calls `check_push_visibility` first (the CLIs before any long work, and the
push functions again right before uploading).
"""

from __future__ import annotations

from hilbert_app.errors import UserError


class PublicRepositoryError(UserError, PermissionError):
    """A push without `--public` to a repository that is public on the Hub."""


def check_push_visibility(repo_id: str, repo_type: str, public: bool, token: str | bool | None = None) -> None:
    """Raise `PublicRepositoryError` if `repo_id` exists, is public, and `public` is False.

    Args:
        repo_id: the Hub repository ("org/name").
        repo_type: "model" or "dataset".
        public: the user asked for a public repository (`--public`): nothing to check.
        token: Hub token (None: the logged-in user's).
    """
    if public:
        return
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        info = HfApi(token=token).repo_info(repo_id, repo_type=repo_type)
    except RepositoryNotFoundError:  # it will be created, private
        return
    if not info.private:
        kind = "dataset " if repo_type == "dataset" else ""
        raise PublicRepositoryError(
            f"The {kind}repository {repo_id} is public on the Hub, and this push is private by default: nothing was "
            "pushed. Pass --public to publish to it, make the repository private first, or push to another name."
        )


def hub_url(repo_id: str, repo_type: str = "model") -> str:
    """The web address of a repository on the Hub this process talks to (`HF_ENDPOINT`, else huggingface.co)."""
    from huggingface_hub import constants

    prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[repo_type]
    return f"{constants.ENDPOINT.rstrip('/')}/{prefix}{repo_id}"
