"""The examples are not installed: put `examples/` on the path, as `make demo` does with
PYTHONPATH, so the tests import `order_service` the way a user runs it."""

from __future__ import annotations

import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))
