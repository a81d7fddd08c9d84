"""The store's values that the web layer names (in signatures, templates and JSON), re-exported.

The web layer reads and renders these records but never imports the store: it goes through the
services, which own every unit of work. ``Database`` is here for the composition root
(``web/app.py`` opens it once per process and hands it to ``build_context``); ``Ran`` and
``Declined`` are what its ``run_inline`` answers (``web/routes/common.py``).
"""

from jitprov.store.console import AuditFilter
from jitprov.store.database import Database, Declined, Ran
from jitprov.store.devices import DeviceRecord, PasskeyRecord
from jitprov.store.records import AccountView, ConnectionRecord, DomainRecord

__all__ = [
    "AccountView",
    "AuditFilter",
    "ConnectionRecord",
    "Database",
    "Declined",
    "DeviceRecord",
    "DomainRecord",
    "PasskeyRecord",
    "Ran",
]
