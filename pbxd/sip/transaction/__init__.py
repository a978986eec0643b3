"""The SIP transaction layer (RFC 3261 §17, RFC 6026), layer 3.

``from pbxd.sip.transaction import TransactionLayer`` is all most callers need;
the parts live in :mod:`.layer` (matching), :mod:`.client`, :mod:`.server` and
:mod:`.common` (states, timer values, :func:`response_address`).
"""

from pbxd.sip.transaction.client import ClientTransaction, make_ack, make_cancel
from pbxd.sip.transaction.common import (
    MAGIC_COOKIE,
    State,
    Timers,
    new_branch,
    response_address,
)
from pbxd.sip.transaction.layer import TransactionLayer
from pbxd.sip.transaction.server import ServerTransaction

__all__ = [
    "MAGIC_COOKIE",
    "ClientTransaction",
    "ServerTransaction",
    "State",
    "Timers",
    "TransactionLayer",
    "make_ack",
    "make_cancel",
    "new_branch",
    "response_address",
]
