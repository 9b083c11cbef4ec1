"""The one service layer that the HTTP routes and the CLI both call (see `core.py`).

`from hearth.services import Services` is the public surface; the model list's scan and memo
live in `listing.py`.
"""

from hearth.services.core import Services, StatusSource
from hearth.services.listing import LIST_PAUSE_EVERY

__all__ = ["LIST_PAUSE_EVERY", "Services", "StatusSource"]
