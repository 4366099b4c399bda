"""Other libraries' log lines stay off the user's terminal, unless `denselab --verbose` asks for them.

TensorFlow's converter logs through absl, LiteRT announces its XNNPACK delegate, TFLM prints a
line per interpreter and its allocation failures, and Ray's C++ core logs its start-up. None of
it is for the user, and stdout must stay clean for --json. Python exceptions still carry the
errors. `--verbose` (DENSELAB_VERBOSE=1) lets all of it through, for debugging.
"""

import contextlib
import os
import sys

VERBOSE_VARIABLE = "DENSELAB_VERBOSE"


def verbose() -> bool:
    return os.environ.get(VERBOSE_VARIABLE, "") not in ("", "0")


@contextlib.contextmanager
def c_output_silenced():
    """Silence what C and C++ libraries print straight to file descriptors 1 and 2 (not with --verbose)."""
    if verbose():
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), 1)
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        for descriptor, copy in zip((1, 2), saved):
            os.dup2(copy, descriptor)
            os.close(copy)
