"""Progress bars: tqdm on a terminal, silent under CI (``$CI`` set) or when ``GPVAE_QUIET=1``."""
from __future__ import annotations

import os

from tqdm.auto import tqdm


def quiet() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("GPVAE_QUIET") == "1"


def progress(iterable=None, **kwargs):
    """``tqdm(iterable, **kwargs)``, disabled when :func:`quiet`."""
    return tqdm(iterable, disable=quiet(), leave=False, **kwargs)
