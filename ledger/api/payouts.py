"""`/v1/payouts` (marketplace): a payout and its state at the provider."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from ledger.api.auth import MARKETPLACE
from ledger.api.schemas import PayoutOut, StateHistoryOut
from ledger.api.views import history_out, payout_out
from ledger.escrow.service import Escrow


class PayoutController(Controller):
    path = "/v1/payouts"
    tags = ["payouts"]
    opt = {"roles": MARKETPLACE}

    @get("/{payout_id:str}", operation_id="getPayout", sync_to_thread=True)
    def read(self, escrow: NamedDependency[Escrow], payout_id: FromPath[str]) -> PayoutOut:
        """A payout: in transit until the provider confirms, then paid (or failed)."""
        return payout_out(escrow.payouts.payout(payout_id))

    @get("/{payout_id:str}/history", operation_id="getPayoutHistory", sync_to_thread=True)
    def history(self, escrow: NamedDependency[Escrow], payout_id: FromPath[str]) -> StateHistoryOut:
        """The states the payout went through, oldest first, with who moved it there (an
        API key's id, `worker`, `provider`, `cli`...)."""
        return history_out(payout_id, escrow.reads.history("payout", payout_id))
