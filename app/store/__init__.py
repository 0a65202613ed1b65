"""Storage: one small interface (`Store`), two backends (MongoDB, embedded SQLite)."""

from app.config import Settings
from app.store.base import DONE, PENDING, Doc, ItemQuery, Store, StoreUnavailable, WorkItem

__all__ = [
    "DONE",
    "PENDING",
    "Doc",
    "ItemQuery",
    "Store",
    "StoreUnavailable",
    "WorkItem",
    "build_store",
]

SQLITE_FILENAME = "cast-ghl.sqlite3"


def build_store(settings: Settings) -> Store:
    """MongoDB when MONGO_URI is set, else the embedded SQLite file under DATA_DIR."""
    if settings.mongo_uri is not None:
        from app.store.mongo import MongoStore

        return MongoStore(settings.mongo_uri.get_secret_value(), settings.mongo_db)
    from app.store.sqlite import SQLiteStore

    return SQLiteStore(settings.data_dir.resolve() / SQLITE_FILENAME)
