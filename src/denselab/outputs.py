"""Writing result files so that a crash never leaves one half-written.

Every file denselab produces is written to a temporary name in the same directory and
then renamed over the final name: a rename within one file system is atomic, so a
reader sees either the old file or the complete new one.
"""

import json
import os
import tempfile
from pathlib import Path

from denselab.errors import BadInput


def prepare_output_dir(path: Path) -> Path:
    """Create `path` (and parents) as a directory, or fail if a file is in the way."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BadInput(f"output directory {path} is a file; choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BadInput(f"cannot create output directory {path}: {error.strerror}") from None
    return path


def check_output_folders(*folders: tuple[str, str, Path]) -> None:
    """Refuse, before any work, an output folder that is a file: (what, its option, path) each.

    Without this a command would train for minutes and fail only when it first writes there.
    """
    for what, option, folder in folders:
        if folder.exists() and not folder.is_dir():
            raise BadInput(f"{what} directory {folder} is a file; choose another {option}")


def write_bytes_atomically(path: Path, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file and a rename."""
    path = Path(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes files private; results are meant to be shared
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_json_atomically(path: Path, value) -> Path:
    """Write `value` as indented JSON through a temporary file and a rename."""
    return write_bytes_atomically(path, (json.dumps(value, indent=2) + "\n").encode())


def temporary_sibling(path: Path) -> Path:
    """A fresh, unused name next to `path`, for tools that insist on writing by name.

    Keras's `model.save` takes a file name, not a file object; it writes here and the
    caller renames the result with `os.replace`.
    """
    path = Path(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    os.unlink(temporary)
    return Path(temporary)
