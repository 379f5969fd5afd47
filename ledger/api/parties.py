"""`/v1/parties` (marketplace): the client and freelancer records printed on invoices."""

from __future__ import annotations

import msgspec
from litestar import Controller, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from ledger.api.auth import MARKETPLACE
from ledger.api.schemas import PartyOut, PartyUpdate
from ledger.api.views import party_out
from ledger.invoices.service import Finance


class PartyController(Controller):
    path = "/v1/parties"
    tags = ["parties"]
    opt = {"roles": MARKETPLACE}

    @put("/{party_id:str}", operation_id="setParty", sync_to_thread=True)
    def set(self, finance: NamedDependency[Finance], party_id: FromPath[str], data: JSONBody[PartyUpdate]) -> PartyOut:
        """Create or update a party record (fields left out keep their value)."""
        return party_out(finance.set_party(party_id, **msgspec.structs.asdict(data)))

    @get("/{party_id:str}", operation_id="getParty", sync_to_thread=True)
    def read(self, finance: NamedDependency[Finance], party_id: FromPath[str]) -> PartyOut:
        """A party record."""
        return party_out(finance.party(party_id))
