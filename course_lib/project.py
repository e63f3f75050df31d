"""Where the course lives: the one setting for its repository URL, and the links built from it.

Every Colab badge, every notebook's clone cell (``REPO_URL = "..."``), the README's Colab column and
``setup_check``'s advice for wheel installs come from :data:`REPOSITORY` and :data:`BRANCH`. A fork
changes these two lines, then runs ``python -m course_lib.authoring.make_student --relink`` to
rewrite the solutions' badges and clone cells and regenerate notebooks/; ``make sync`` (the
generator's ``--check``) fails while any notebook or the README still names another address.

The setting is a Python constant rather than a ``pyproject.toml`` table because a wheel install
has no ``pyproject.toml``, and ``setup_check`` must still tell a wheel user where to clone from.
"""

from __future__ import annotations

#: The course's public git repository (what the notebooks' setup cell clones on Colab).
REPOSITORY = "https://github.com/c2f-course/video-moment-search"
#: The branch the Colab badges open.
BRANCH = "main"

_GITHUB = "https://github.com/"
_COLAB_GITHUB = "https://colab.research.google.com/github/"
_BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"


def github_slug(repository: str | None = None) -> str:
    """``owner/name`` of a GitHub repository URL (what Colab's ``/github/`` links need).

    Args:
        repository: the URL; default :data:`REPOSITORY` (read at call time).

    Raises:
        ValueError: ``repository`` is not an ``https://github.com/owner/name`` URL.
    """
    repository = REPOSITORY if repository is None else repository
    # 1. only GitHub repositories open in Colab by URL
    if not repository.startswith(_GITHUB):
        raise ValueError(f"repository {repository!r} is not an https://github.com/owner/name URL")
    # 2. owner/name, without a trailing slash or .git
    slug = repository[len(_GITHUB) :].strip("/").removesuffix(".git")
    if slug.count("/") != 1:
        raise ValueError(f"repository {repository!r} is not an https://github.com/owner/name URL")
    return slug


def colab_url(folder: str, notebook: str) -> str:
    """Colab address that opens ``<folder>/<notebook>`` of :data:`REPOSITORY` on :data:`BRANCH`.

    Args:
        folder: ``"notebooks"`` or ``"solutions"``.
        notebook: file name, e.g. ``"00_welcome.ipynb"``.
    """
    return f"{_COLAB_GITHUB}{github_slug()}/blob/{BRANCH}/{folder}/{notebook}"


def colab_badge(folder: str, notebook: str) -> str:
    """The Markdown "Open In Colab" badge that opens ``<folder>/<notebook>``."""
    return f"[![Open In Colab]({_BADGE_IMAGE})]({colab_url(folder, notebook)})"


def clone_command() -> str:
    """The shell command that fetches the course with its ``data/`` folder."""
    return f"git clone {REPOSITORY}"
