"""Installations and their tokens: the only code that reads or writes them, encrypted at rest."""

from app.oauth.crypto import TokenCipher
from app.oauth.schemas import Installation
from app.store import Doc, Store

COLLECTION = "installations"
_SECRET_FIELDS = ("access_token", "refresh_token")


def location_key(location_id: str) -> str:
    return f"location:{location_id}"


def company_key(company_id: str) -> str:
    return f"company:{company_id}"


class InstallationRepository:
    def __init__(self, store: Store, cipher: TokenCipher) -> None:
        self._store = store
        self._cipher = cipher

    def _encode(self, installation: Installation) -> dict[str, object]:
        data = installation.model_dump()
        for field in _SECRET_FIELDS:
            if data[field] is not None:
                data[field] = self._cipher.encrypt(data[field])
        return data

    def _decode(self, doc: Doc) -> Installation:
        data = dict(doc.data)
        for field in _SECRET_FIELDS:
            if data.get(field) is not None:
                data[field] = self._cipher.decrypt(data[field])
        return Installation.model_validate(data)

    async def get(self, key: str) -> tuple[Installation, int] | None:
        """The installation and its revision (for compare-and-swap)."""
        doc = await self._store.get_doc(COLLECTION, key)
        return (self._decode(doc), doc.rev) if doc else None

    async def put(self, installation: Installation) -> None:
        await self._store.put_doc(COLLECTION, installation.id, self._encode(installation))

    async def swap(self, installation: Installation, expected_rev: int) -> bool:
        return await self._store.swap_doc(
            COLLECTION, installation.id, expected_rev, self._encode(installation)
        )

    async def delete(self, key: str) -> bool:
        return await self._store.delete_doc(COLLECTION, key)

    async def list(self) -> list[Installation]:
        return [self._decode(doc) for doc in await self._store.list_docs(COLLECTION)]
