"""Progress bars: tqdm on a terminal; silent under CI (``$CI`` set), with ``GPVAE_QUIET=1``, or when
stderr is not a terminal (notebooks, logs)."""
from __future__ import annotations

import os
import sys

from tqdm import tqdm


def quiet() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("GPVAE_QUIET") == "1" or not sys.stderr.isatty()


def progress(iterable=None, **kwargs):
    """``tqdm(iterable, **kwargs)``, disabled when :func:`quiet`."""
    return tqdm(iterable, disable=quiet(), leave=False, **kwargs)
