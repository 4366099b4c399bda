"""TFLM's object files kept by what they are compiled from, so that libraries share the objects they have in common.

The reference and CMSIS-NN libraries of a core differ only in their kernels: the runtime's
40-odd C++ sources, most of a library's compile time, are the same files in both trees, and
compiled with the same flags they give the same object to the byte (checked on this machine's
trees). So each object is kept in the cache's objects/ folder under a hash of what decides its
bytes: the compiler's version, its flags (the include folders' paths aside) and the source as
the preprocessor sees it, every header and define included, without line markers (which name
the tree's path). A source that expands differently in the two trees, or under another define,
hashes differently and is compiled again. Preprocessing takes a tenth of a second of CPU where
compiling takes three or four.
"""

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

OBJECTS = "objects"


@functools.cache
def _version(compiler: str) -> str:
    return subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout


def object_key(command: list[str]) -> str | None:
    """The hash of what decides the object `command` (compiler, flags, -I..., -c SOURCE, -o OBJECT) makes,
    or None when the source does not preprocess (compiling it then reports why)."""
    source = command.index("-c")
    flags = [flag for flag in command[1:source] if not flag.startswith("-I")]
    preprocess = [*command[:source], "-E", "-P", command[source + 1]]
    result = subprocess.run(preprocess, capture_output=True)
    if result.returncode != 0:
        return None
    digest = hashlib.sha256()
    # The file's name too: the object records it (two kernel_util.cc expand alike, but are two files).
    for part in (_version(command[0]), *flags, Path(command[source + 1]).name):
        digest.update(part.encode() + b"\0")
    digest.update(result.stdout)
    return digest.hexdigest()


def compile_shared(command: list[str], what: str, cache: Path, compile_source: Callable[[list[str], str], None]) -> None:
    """Run `command` through `compile_source`, or copy its object from `cache` when one compiled from the
    same preprocessed source and flags is kept there; a newly compiled object is kept for the next library."""
    output = Path(command[command.index("-o") + 1])
    key = object_key(command)
    kept = cache / OBJECTS / f"{key}.o" if key else None
    if kept is not None and kept.is_file():
        shutil.copyfile(kept, output)
        return
    compile_source(command, what)
    if kept is not None:
        kept.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Written beside its final name and renamed, so that a reader never sees half an object.
        handle, temporary = tempfile.mkstemp(prefix=f".{key}.", dir=kept.parent)
        os.close(handle)
        shutil.copyfile(output, temporary)
        os.replace(temporary, kept)
