"""The simulated provider behaves as a provider would, and keeps its own books apart from the ledger."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ledger import Ledger
from ledger.db.provider_books import DatabaseBooks
from ledger.errors import InvalidRequest
from ledger.gateway import GatewayUnavailable, UnknownProviderObject
from ledger.gateway.books import ProviderMovement
from ledger.gateway.simulated import SimulatedGateway
from tests.faulty_gateway import AFTER, BEFORE, TIMEOUT, TWICE, FaultyGateway

META = {"order": "ord_1"}


@pytest.fixture
def provider(book: Ledger, fresh_database_url: str) -> Iterator[SimulatedGateway]:
    gateway = SimulatedGateway(DatabaseBooks(fresh_database_url))
    yield gateway
    gateway.close()


def charge(gateway: SimulatedGateway | FaultyGateway, key: str = "ch_key", amount: int = 100_00, **meta: str):  # type: ignore[no-untyped-def]
    return gateway.charge(amount=amount, currency="USD", idempotency_key=key, customer="cus_1", metadata=meta)


def refund(gateway: SimulatedGateway, charge_reference: str | None, amount: int, key: str = "rf_key"):  # type: ignore[no-untyped-def]
    return gateway.refund(amount=amount, currency="USD", idempotency_key=key, charge_reference=charge_reference)


def test_a_repeated_call_gets_the_first_answer_even_from_a_restarted_provider(
    provider: SimulatedGateway, fresh_database_url: str
) -> None:
    first = charge(provider)
    provider.decline_next("card_declined")
    declined = charge(provider, "other_key")
    restarted = SimulatedGateway(DatabaseBooks(fresh_database_url))
    try:
        assert charge(restarted) == first and first.succeeded
        assert charge(restarted, "other_key") == declined and declined.failure_reason == "card_declined"
        assert restarted.movements() == [ProviderMovement("charge", first.reference, 100_00, "USD")]
        assert list(restarted.calls) == ["ch_key", "other_key"]
    finally:
        restarted.close()


def test_a_key_reused_for_another_request_is_refused(provider: SimulatedGateway) -> None:
    charge(provider)
    with pytest.raises(InvalidRequest, match="was used for a charge of 10000 USD"):
        charge(provider, amount=200_00)


def test_a_refund_must_name_a_succeeded_charge_and_fit_what_is_left_of_it(provider: SimulatedGateway) -> None:
    paid = charge(provider)
    with pytest.raises(InvalidRequest, match="no such charge"):
        refund(provider, "pi_sim_999", 10_00)
    with pytest.raises(InvalidRequest, match="no such charge"):
        refund(provider, None, 10_00)
    provider.require_action_next()
    waiting = charge(provider, "waiting")
    with pytest.raises(InvalidRequest, match="only a succeeded charge can be refunded"):
        refund(provider, waiting.reference, 10_00)
    assert refund(provider, paid.reference, 60_00, "rf_1").succeeded
    with pytest.raises(InvalidRequest, match="more than the 4000 left unrefunded"):
        refund(provider, paid.reference, 60_00, "rf_2")
    assert refund(provider, paid.reference, 40_00, "rf_2").succeeded
    assert refund(provider, paid.reference, 60_00, "rf_1").succeeded  # a replay, not a third refund
    assert [m.amount for m in provider.movements()] == [100_00, -60_00, -40_00]


def test_a_charge_waiting_for_the_payer_can_be_cancelled_and_a_succeeded_one_cannot(
    provider: SimulatedGateway,
) -> None:
    provider.require_action_next()
    waiting = charge(provider, "waiting")
    assert provider.cancel_charge(reference=waiting.reference, idempotency_key="c1").status == "cancelled"
    assert provider.cancel_charge(reference=waiting.reference, idempotency_key="c1").status == "cancelled"
    assert provider.retrieve_charge(waiting.reference)[0].status == "cancelled"
    with pytest.raises(InvalidRequest):
        provider.complete_action(waiting.reference, succeed=True)  # too late: it was withdrawn
    paid = charge(provider)
    assert provider.cancel_charge(reference=paid.reference, idempotency_key="c2").status == "succeeded"
    with pytest.raises(InvalidRequest, match="no such charge"):
        provider.cancel_charge(reference="pi_sim_999", idempotency_key="c3")
    assert [m.reference for m in provider.movements()] == [paid.reference]


def test_the_payer_finishing_3ds_later_moves_the_money(provider: SimulatedGateway) -> None:
    provider.require_action_next()
    waiting = charge(provider, "passes", **META)
    assert waiting.status == "requires_action" and provider.movements() == []
    assert provider.complete_action(waiting.reference, succeed=True).succeeded
    result, metadata = provider.retrieve_charge(waiting.reference)
    assert result.succeeded and metadata == META
    assert charge(provider, "passes", **META).status == "requires_action"  # a replay gets the first answer
    provider.require_action_next()
    failing = charge(provider, "fails")
    assert provider.complete_action(failing.reference, succeed=False).failed
    assert provider.movements() == [ProviderMovement("charge", waiting.reference, 100_00, "USD")]
    with pytest.raises(UnknownProviderObject):
        provider.retrieve_charge("pi_sim_999")


def test_objects_are_found_by_our_order_id(provider: SimulatedGateway) -> None:
    paid = charge(provider, **META)
    sent = provider.payout(
        amount=50_00, currency="USD", idempotency_key="po_1", destination="acct_1", metadata={"order": "ord_2"}
    )
    assert provider.find("charge", "ord_1") == paid
    assert provider.find("transfer", "ord_2") == sent
    assert provider.find("refund", "ord_1") is None and provider.find("charge", "ord_404") is None


def test_the_provider_books_survive_the_callers_rollback(book: Ledger, provider: SimulatedGateway) -> None:
    # On SQLite a write transaction holds the database's only write lock, which the
    # provider's own connection would wait for: there the caller's transaction reads.
    read_only = book.database.engine.dialect.name == "sqlite"

    def work(uow: object) -> None:
        charge(provider)
        raise RuntimeError("the ledger's transaction fails after the provider charged")

    with pytest.raises(RuntimeError):
        book.transaction(work, read_only=read_only)  # type: ignore[arg-type]
    assert [m.kind for m in provider.movements()] == ["charge"]


def test_a_provider_without_a_database_keeps_the_same_books_in_memory() -> None:
    provider = SimulatedGateway(fee_basis_points=290, fee_fixed=30)
    paid = charge(provider)
    assert refund(provider, paid.reference, 10_00).succeeded
    with pytest.raises(InvalidRequest):
        refund(provider, paid.reference, 95_00, "rf_2")
    assert provider.processing_fee(paid.reference) == (3_20, "USD")
    assert [(m.kind, m.amount) for m in provider.movements()] == [
        ("charge", 100_00),
        ("fee", -3_20),
        ("refund", -10_00),
    ]


def test_scripted_faults_happen_where_they_say(provider: SimulatedGateway) -> None:
    faulty = FaultyGateway(provider)
    faulty.script("charge", BEFORE, AFTER, None, TIMEOUT, None, TWICE)
    with pytest.raises(GatewayUnavailable):
        charge(faulty, "k1")
    assert provider.records() == []  # nothing happened at the provider
    with pytest.raises(GatewayUnavailable):
        charge(faulty, "k1")
    assert len(provider.records()) == 1  # the provider charged; the answer was lost
    assert charge(faulty, "k1").reference == provider.records()[0].reference  # resent with the key: once
    with pytest.raises(GatewayUnavailable):
        charge(faulty, "k2")
    assert charge(faulty, "k2").succeeded and len(provider.records()) == 2
    assert charge(faulty, "k3").succeeded and faulty.sent[-2:] == [("charge", "k3"), ("charge", "k3")]
    assert len(provider.records()) == 3  # answered twice, charged once


def test_an_outage_times_out_one_call_before_or_after_the_work_and_a_retry_gets_the_first_answer(
    provider: SimulatedGateway,
) -> None:
    provider.unavailable_next()
    assert provider.outages_armed == 1
    with pytest.raises(GatewayUnavailable, match="did not answer"):
        charge(provider)
    assert provider.records() == [] and provider.outages_armed == 0  # nothing done
    provider.lose_answer_next()
    with pytest.raises(GatewayUnavailable, match="answer was lost"):
        charge(provider)
    [done] = provider.records()  # done, though the caller saw a timeout
    assert charge(provider).reference == done.reference  # the retry: the first answer, nothing more
    provider.lose_answer_next()
    with pytest.raises(GatewayUnavailable):
        refund(provider, done.reference, 10_00)
    assert refund(provider, done.reference, 10_00).succeeded
    provider.lose_answer_next()
    with pytest.raises(GatewayUnavailable):
        provider.payout(amount=5_00, currency="USD", idempotency_key="po_1", destination="acct_1", metadata=META)
    assert provider.payout(
        amount=5_00, currency="USD", idempotency_key="po_1", destination="acct_1", metadata=META
    ).succeeded
    assert [m.kind for m in provider.movements()] == ["charge", "refund", "transfer"]
    provider.unavailable_next()
    provider.clear_outages()  # withdrawn: the next call is answered
    assert charge(provider, "ch_other").succeeded
