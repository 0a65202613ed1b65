"""Sub-account names as GHL last gave them (the installed-locations answer), kept so every
view that shows a location id can show its name without asking GHL."""

from app.store import Store

COLLECTION = "location_names"


class LocationNames:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, location_id: str) -> str | None:
        doc = await self._store.get_doc(COLLECTION, location_id)
        return str(doc.data["name"]) if doc and doc.data.get("name") else None

    async def all(self) -> dict[str, str]:
        """Every known name, by location id."""
        docs = await self._store.list_docs(COLLECTION, limit=100_000)
        return {doc.id: str(doc.data["name"]) for doc in docs if doc.data.get("name")}

    async def remember(self, company_id: str, names: dict[str, str], now: float) -> None:
        """Store the names GHL gave for the company's sub-accounts (changed ones only)."""
        known = await self.all()
        for location_id, name in names.items():
            if name and known.get(location_id) != name:
                await self._store.put_doc(
                    COLLECTION, location_id, {"name": name, "company_id": company_id, "at": now}
                )
