"""How deeply a JSON body nests, found without parsing it: a body nested past what a scoring
server's parser can take is refused by the router before it reaches ``score.py``.

Python's ``json`` (what ``score.py`` and azmlinfsrv parse with) gives up near 1,000 levels with a
``RecursionError``, which a scoring script rarely catches (a 500). Real scoring inputs nest a few
levels. The scan costs two ``bytes.count`` calls for a body with fewer brackets than the limit (the
usual case); otherwise strings are cut out with one regular expression, the brackets kept as +1/-1
bytes, and the deepest running sum is taken — all in C, a few milliseconds per megabyte.
"""

from __future__ import annotations

import re
from array import array
from itertools import accumulate

# a JSON string, escapes included: brackets inside one do not nest
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = b"[]{}"
_OTHER_BYTES = bytes(b for b in range(256) if b not in _BRACKETS)
# opening brackets become 1, closing ones 255 (-1 as a signed byte)
_SIGNS = bytes.maketrans(_BRACKETS, b"\x01\xff\x01\xff")


def depth_past(body: bytes, limit: int) -> int | None:
    """How deeply ``[`` and ``{`` nest in ``body`` outside strings, when that is more than ``limit``; else None.

    A body with no more than ``limit`` opening brackets in all cannot nest deeper, and is not scanned.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return None
    depth = max(accumulate(array("b", _STRING.sub(b"", body).translate(_SIGNS, _OTHER_BYTES))), default=0)
    return depth if depth > limit else None


def is_json_media_type(content_type: bytes | None) -> bool:
    """A body to scan: declared JSON (``application/json``, ``...+json``), or not declared at all."""
    if not content_type:
        return True
    media_type = content_type.split(b";", 1)[0].strip().lower()
    return media_type.endswith(b"/json") or media_type.endswith(b"+json")
