"""The journal as a Beancount file (https://beancount.github.io), which `bean-check` accepts.

Pure text: the accounts, the balances and the entries come in as domain values (read by
`ledger.invoices.service.Finance.export_beancount` in one snapshot), and the file goes
out in pieces as the entries stream by, so a journal of any length takes the memory of
its chart of accounts and one entry.

What the file holds, for a half-open period [from, to) on `effective_at` (either end
may be open):

- a header comment naming the period, and `option "operating_currency"` per currency
  of the chart;
- an `open` directive for every account, with its currencies and its code as metadata
  (`code: "assets:psp:simulated"`), dated the day the export starts: `from`'s day, or
  without `from` the day of the first entry listed (so never after a posting to it);
- with `from`: the opening balances of every account as of `from`, one transaction per
  currency dated `from`'s day, against `Equity:Opening-Balances`; entries effective
  before `from` are not listed;
- one transaction per entry effective in [from, to), dated by the UTC day of its
  `effective_at`, its kind as the narration and as metadata, with its id
  (`entry_id`) and its references (`ref_<key>`); amounts are exact decimals of the
  major unit (`ledger.money`: JPY has no decimals, BHD three), debits positive;
- a `balance` assertion for every account and currency of the chart, exact (`~ 0`:
  Beancount would otherwise tolerate a difference of one minor unit).

Days and instants: Beancount dates have no time of day, and a `balance` directive checks
what was posted strictly before its day. So the assertions are dated the first midnight
(UTC) at or after `to` (`to`'s day when `to` is a midnight, the next day otherwise), and
assert the ledger's balances from every entry effective before `to`: the entries listed
are exactly those (all dated before that midnight), whatever the time of day of `to` or
of the entries. An entry at 2026-01-31T12:00Z is outside `[…, 2026-01-31)` and inside
`[…, 2026-01-31T12:00:01Z)`, whose assertions are dated 2026-02-01. `from` may have a time
of day too: the opening balances count what was effective before that instant and are
dated its day, on or before every entry listed. Without `to` every entry from `from` on
is listed and the assertions are dated the day after the last one (after `from`'s day, or
today, when none is listed).

Account names: an account's type gives its root (Assets, Liabilities, Equity, Income for
revenue, Expenses); the code's first segment is dropped when it names that root
(`assets:psp:simulated` -> `Assets:Psp:Simulated`, `revenue:fees:service` ->
`Income:Fees:Service`); each segment becomes a Beancount component: '_' and '.' become
'-', the first character is upper-cased (an `X` is put before one that cannot start a
component). The mapping is one-to-one over the chart: codes that would share a name
(`fr_1` and `fr-1`) each get a suffix of their code's SHA-256 (`Fr-1-3f9a2b1c`),
deterministically, whatever order the accounts come in. The same code in several
currencies is one Beancount account open in all of them.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from ledger.accounts import Account, AccountType, Side
from ledger.clock import require_utc
from ledger.errors import InvalidRequest
from ledger.journal import Entry
from ledger.money import format_amount

#: An account of the ledger: (code, currency).
AccountKey = tuple[str, str]
#: What one Beancount account stands for: an account code of one type (in any currency).
NamedCode = tuple[str, AccountType]

ROOTS: Mapping[AccountType, str] = {
    AccountType.ASSET: "Assets",
    AccountType.LIABILITY: "Liabilities",
    AccountType.EQUITY: "Equity",
    AccountType.REVENUE: "Income",
    AccountType.EXPENSE: "Expenses",
}
#: A code's first segment that only repeats its type, and is dropped.
_ROOT_WORDS: Mapping[AccountType, frozenset[str]] = {
    AccountType.ASSET: frozenset({"assets", "asset"}),
    AccountType.LIABILITY: frozenset({"liabilities", "liability"}),
    AccountType.EQUITY: frozenset({"equity"}),
    AccountType.REVENUE: frozenset({"revenue", "income"}),
    AccountType.EXPENSE: frozenset({"expenses", "expense"}),
}

#: Where the opening balances of an export with a start come from; no account maps onto it.
OPENING_BALANCES = "Equity:Opening-Balances"

#: About how many characters are gathered into one piece of the file.
CHUNK_CHARS = 64 * 1024

_NOT_IN_COMPONENT = re.compile(r"[^A-Za-z0-9-]")
_METADATA_KEY = re.compile(r"[a-z][A-Za-z0-9_-]+")
_NOT_IN_METADATA_KEY = re.compile(r"[^A-Za-z0-9_-]")
#: Hex digits of a code's SHA-256 told apart by: a few first, the whole if they clash.
_SHORT_DIGITS, _ALL_DIGITS = 8, 64


# --- the period --------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportPeriod:
    """What an export covers: entries effective in [start, end), in UTC.

    Attributes:
        start, end: the period's ends; None: unbounded on that side.
        today: the clock's day, to date the assertions of an export with no end and no entry.
    """

    start: datetime | None
    end: datetime | None
    today: date

    @property
    def opening_day(self) -> date | None:
        """The day the opening balances are dated: `start`'s (None without a start)."""
        return None if self.start is None else self.start.date()

    def assertion_day(self, last_entry: date | None) -> date:
        """The day the balance assertions are dated: the first midnight at or after `end`;
        without an end, the day after the last entry listed (or after the start's day,
        or after today, when none is)."""
        if self.end is not None:
            day = self.end.date()
            return day if self.end == _midnight(day) else day + timedelta(days=1)
        last = last_entry or self.opening_day or self.today
        return last + timedelta(days=1)

    def balances_before(self, assertion_day: date) -> datetime:
        """The instant the asserted balances are taken at: `end`, or the assertion day's midnight."""
        return self.end if self.end is not None else _midnight(assertion_day)

    def describe(self) -> str:
        """`[2026-01-01T00:00:00Z, 2026-02-01T00:00:00Z)`; an open end is `beginning` or `end`."""
        start = "beginning" if self.start is None else _instant(self.start)
        end = "end" if self.end is None else _instant(self.end)
        return f"[{start}, {end})"


def export_period(period_from: datetime | None, period_to: datetime | None, *, today: date) -> ExportPeriod:
    """The period [from, to) as UTC instants; `InvalidRequest` for a time without an
    offset or a period that ends before or when it starts."""
    try:
        start = None if period_from is None else require_utc(period_from)
        end = None if period_to is None else require_utc(period_to)
    except ValueError as error:
        raise InvalidRequest(str(error), field="from" if period_from is not None else "to") from None
    if start is not None and end is not None and end <= start:
        raise InvalidRequest(
            f"the period ends ({end.isoformat()}) before or when it starts ({start.isoformat()})", field="to"
        )
    return ExportPeriod(start, end, today)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- account names -------------------------------------------------------------------------


def _component(segment: str) -> str:
    text = _NOT_IN_COMPONENT.sub("-", segment)
    if not text[:1].isalnum():
        text = "X" + text
    return text[:1].upper() + text[1:]


def plain_name(code: str, account_type: AccountType) -> str:
    """The Beancount name of a code of a type before names that clash are told apart."""
    segments = code.split(":")
    if len(segments) > 1 and segments[0].lower() in _ROOT_WORDS[account_type]:
        segments = segments[1:]
    return ":".join([ROOTS[account_type], *(_component(s) for s in segments)])


def _suffixed(named: NamedCode, digits: int) -> str:
    code, account_type = named
    return f"{plain_name(code, account_type)}-{hashlib.sha256(code.encode()).hexdigest()[:digits]}"


def account_names(codes: Iterable[NamedCode], reserved: Iterable[str] = (OPENING_BALANCES,)) -> dict[NamedCode, str]:
    """The Beancount name of each (code, type): legal, distinct for distinct codes and
    none of `reserved`.

    A name that more than one code would get (or a reserved one) is given to none of
    them: each gets its plain name with a short hash of its code; should that clash
    too, the whole hash (two codes with different hashes never clash then, so this
    ends). The result depends on the set of codes only, not on their order."""
    taken = set(reserved)
    names = {named: plain_name(*named) for named in sorted(set(codes))}
    digits = _SHORT_DIGITS
    while True:
        claims = Counter(names.values())
        clashing = [named for named, name in names.items() if claims[name] > 1 or name in taken]
        if not clashing:
            return names
        for named in clashing:
            names[named] = _suffixed(named, digits)
        digits = _ALL_DIGITS


# --- directives ----------------------------------------------------------------------------


def _string(text: str) -> str:
    """A Beancount string: backslashes and quotes escaped, line breaks too (a directive stays on its lines)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def _metadata_key(prefix: str, key: str) -> str:
    """`prefix + key` when Beancount takes it as a key; else with the key's illegal
    characters as '_' and a hash of it, so two keys never meet."""
    plain = prefix + key
    if _METADATA_KEY.fullmatch(plain):
        return plain
    cleaned = _NOT_IN_METADATA_KEY.sub("_", key)
    return f"{prefix}{cleaned}_{hashlib.sha256(key.encode()).hexdigest()[:_SHORT_DIGITS]}"


def amount(minor: int, currency: str) -> str:
    """Minor units as Beancount's exact decimal of the major unit: `-1000.00 USD`, `5 JPY`."""
    return f"{format_amount(minor, currency)} {currency}"


def _signed(side: Side, minor: int) -> int:
    return minor if side is Side.DEBIT else -minor


Leg = tuple[str, int, str]  # Beancount account, debits minus credits (minor units), currency


def _transaction(day: date, narration: str, metadata: Iterable[tuple[str, str]], legs: Iterable[Leg]) -> str:
    lines = [f"{day.isoformat()} * {_string(narration)}"]
    lines.extend(f"  {key}: {_string(value)}" for key, value in metadata)
    rendered = [(name, amount(minor, currency)) for name, minor, currency in legs]
    width = max((len(name) for name, _ in rendered), default=0)
    lines.extend(f"  {name:<{width}}  {text}" for name, text in rendered)
    return "\n".join(lines) + "\n\n"


def _entry(entry: Entry, names: Mapping[AccountKey, str]) -> str:
    metadata = [("entry_id", str(entry.id)), ("kind", entry.kind)]
    metadata.extend((_metadata_key("ref_", key), str(value)) for key, value in sorted(entry.refs.items()))
    legs = [(names[(p.account, p.currency)], _signed(p.side, p.amount), p.currency) for p in entry.postings]
    return _transaction(entry.effective_at.astimezone(UTC).date(), entry.kind, metadata, legs)


def _open(day: date, name: str, currencies: Iterable[str], code: str | None) -> str:
    text = f"{day.isoformat()} open {name} {','.join(sorted(currencies))}\n"
    return text + (f"  code: {_string(code)}\n" if code is not None else "")


def _balance(day: date, name: str, minor: int, currency: str) -> str:
    # `~ 0`: exact. Without a tolerance Beancount infers one from the number's last
    # digit, and 100.01 USD would pass for 100.00 USD.
    return f"{day.isoformat()} balance {name} {format_amount(minor, currency)} ~ 0 {currency}\n"


# --- the file --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Chart:
    """The accounts as Beancount names them."""

    name_of: Mapping[AccountKey, str]
    currencies_of: Mapping[str, frozenset[str]]
    code_of: Mapping[str, str]

    @classmethod
    def of(cls, accounts: Iterable[Account]) -> _Chart:
        chart = list(accounts)
        names = account_names((a.code, a.type) for a in chart)
        name_of = {(a.code, a.currency): names[(a.code, a.type)] for a in chart}
        currencies: dict[str, set[str]] = defaultdict(set)
        for (_, currency), name in name_of.items():
            currencies[name].add(currency)
        return cls(
            name_of,
            {name: frozenset(held) for name, held in currencies.items()},
            {name: code for (code, _), name in names.items()},
        )

    @property
    def currencies(self) -> list[str]:
        return sorted({currency for _, currency in self.name_of})


def _subtree_sums(balances: Mapping[AccountKey, int], asserted: Iterable[AccountKey]) -> dict[AccountKey, int]:
    """What Beancount's `balance` checks: an account's postings and all its sub-accounts'."""
    sums = dict.fromkeys(asserted, 0)
    for (name, currency), net in balances.items():
        parts = name.split(":")
        for depth in range(2, len(parts) + 1):
            key = (":".join(parts[:depth]), currency)
            if key in sums:
                sums[key] += net
    return sums


def _day(entry: Entry) -> date:
    return entry.effective_at.astimezone(UTC).date()


@dataclass(frozen=True)
class _File:
    """One export being written: its period, its chart and the balances it is given."""

    period: ExportPeriod
    chart: _Chart
    opening: Mapping[AccountKey, int]
    closing: Callable[[datetime], Mapping[AccountKey, int]]

    def directives(self, entries: Iterator[Entry]) -> Iterator[str]:
        first = next(entries, None)
        # Every account is opened the day the export starts, so before any posting to it.
        opened = self.period.opening_day or (_day(first) if first else self.period.assertion_day(None))
        yield from self.header()
        yield from self.opens(opened)
        legs = self.opening_legs()
        if self.period.start is not None:
            yield f"; Opening balances: every entry effective before {_instant(self.period.start)}.\n"
            for currency, found in sorted(legs.items()):
                residual = (OPENING_BALANCES, -sum(net for _, net, _ in found), currency)
                yield _transaction(opened, f"opening balances {currency}", [], [*found, residual])
        last: date | None = None
        for entry in itertools.chain(() if first is None else (first,), entries):
            yield _entry(entry, self.chart.name_of)
            last = _day(entry)
        yield from self.assertions(self.period.assertion_day(last), legs)

    def header(self) -> Iterator[str]:
        yield "; The ledger's journal, exported for Beancount (ledger.beancount).\n"
        yield f"; Period: {self.period.describe()}, on effective_at (UTC); transactions are dated by its UTC day.\n"
        yield "; Amounts are exact decimals of each currency's major unit; debits are positive.\n\n"
        yield from (f'option "operating_currency" "{currency}"\n' for currency in self.chart.currencies)
        yield "\n"

    def opens(self, day: date) -> Iterator[str]:
        for name in sorted(self.chart.currencies_of):
            yield _open(day, name, self.chart.currencies_of[name], self.chart.code_of[name])
        if self.period.start is not None:
            yield _open(day, OPENING_BALANCES, self.chart.currencies, None)
        yield "\n"

    def opening_legs(self) -> dict[str, list[Leg]]:
        """Per currency, the accounts' balances at the start that are not zero, by name."""
        found: dict[str, list[Leg]] = defaultdict(list)
        for (code, currency), net in self.opening.items():
            if net != 0:
                found[currency].append((self.chart.name_of[(code, currency)], net, currency))
        return {currency: sorted(legs) for currency, legs in found.items()}

    def assertions(self, day: date, opening_legs: Mapping[str, list[Leg]]) -> Iterator[str]:
        """A `balance` directive for every account and currency of the chart (and for the
        opening balances' account, which holds what the opening balances leave: zero)."""
        moment = self.period.balances_before(day)
        balances: dict[AccountKey, int] = defaultdict(int)
        for (code, currency), net in self.closing(moment).items():
            balances[(self.chart.name_of[(code, currency)], currency)] += net
        asserted = {(name, currency) for name, held in self.chart.currencies_of.items() for currency in held}
        if self.period.start is not None:
            for currency in self.chart.currencies:
                asserted.add((OPENING_BALANCES, currency))
                balances[(OPENING_BALANCES, currency)] -= sum(net for _, net, _ in opening_legs.get(currency, ()))
        yield f"\n; Balances of every entry effective before {_instant(moment)}, checked at the start of {day}.\n"
        for (name, currency), net in sorted(_subtree_sums(balances, asserted).items()):
            yield _balance(day, name, net, currency)


def _chunked(pieces: Iterable[str]) -> Iterator[str]:
    gathered: list[str] = []
    size = 0
    for piece in pieces:
        gathered.append(piece)
        size += len(piece)
        if size >= CHUNK_CHARS:
            yield "".join(gathered)
            gathered, size = [], 0
    if gathered:
        yield "".join(gathered)


def export(
    period: ExportPeriod,
    accounts: Iterable[Account],
    opening: Mapping[AccountKey, int],
    entries: Iterable[Entry],
    closing: Callable[[datetime], Mapping[AccountKey, int]],
) -> Iterator[str]:
    """The Beancount file, in pieces of about `CHUNK_CHARS`, written as `entries` are read.

    Args:
        period: what the export covers (`export_period`).
        accounts: the whole chart of accounts (read at once).
        opening: debits minus credits per account of every entry effective before the
            period's start (empty without a start; accounts at zero may be left out).
        entries: the entries effective in the period, in journal order (effective time, id).
        closing: debits minus credits per account of every entry effective before an
            instant; called once, after the last entry, for the assertions.
    """
    return _chunked(_File(period, _Chart.of(accounts), opening, closing).directives(iter(entries)))
