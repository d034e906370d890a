"""Progress bars for long work: live on a terminal, a line every 30 s in logs (CI, files)."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm

from flowdisco import dist


def progress_bar(total: int, desc: str, enabled: bool = True, initial: int = 0, **kwargs: Any) -> tqdm:
    interactive = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True,
                disable=not (enabled and dist.is_main()), mininterval=0.1 if interactive else 30.0, **kwargs)
