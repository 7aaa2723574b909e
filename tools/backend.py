"""The local file backend this project's commands and tests use, and how its URL maps to a folder."""

from __future__ import annotations

from pathlib import Path

# gocloud's fileblob, under Pulumi's file backend, replaces a state file atomically but rewrites the `.attrs` sidecar
# beside it in place, so a read racing a write (a second `pulumi up` meeting the lock, the program reading its own
# last outputs) can find the sidecar empty and fail with "failed to load checkpoint: EOF". Pulumi reads nothing from
# the sidecar; metadata=skip stops it being written.
FILE_BACKEND_OPTIONS = "?metadata=skip"


def local_backend_url(state: Path) -> str:
    return f"file://{state}{FILE_BACKEND_OPTIONS}"


def local_state_dir(backend_url: str) -> Path | None:
    """The folder of a file:// backend URL (options stripped), or None for any other backend."""
    if not backend_url.startswith("file://"):
        return None
    return Path(backend_url.removeprefix("file://").split("?", 1)[0]).expanduser()
