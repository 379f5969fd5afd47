"""PDFs of issued documents and statements; the only module that imports reportlab.

Everything printed comes from the stored `Document` or `Statement` alone, and the
output is deterministic: reportlab runs in invariant mode (fixed file id and
timestamp) and the PDF's creation date is the document's issue time (a
statement's: the end of its period), so rendering twice gives identical bytes.

Amounts go from integer minor units to an exact `Decimal` (`to_decimal`) and are
formatted by babel with the currency's ISO 4217 exponent, not CLDR's digits (they
differ for a few currencies, e.g. IQD), so nothing is ever rounded for display.

Fonts: DejaVu Sans when the system has it (wide glyph coverage: ₹, ₩, ₽, ...),
otherwise Bitstream Vera, which ships with reportlab; both are embedded, so the
file looks the same everywhere. A currency symbol the font cannot draw is replaced
by the ISO code ("INR1,234.56", as babel writes it), never by a box. Other text
the font cannot draw (CJK names, for one) still prints as boxes, and right-to-left
scripts are not reordered: both need a font and a bidi pass this module lacks.
"""

from __future__ import annotations

import functools
import io
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape

from babel import Locale
from babel.numbers import format_currency, parse_pattern
from reportlab.lib import colors  # type: ignore[import-untyped, unused-ignore]
from reportlab.lib.enums import TA_RIGHT  # type: ignore[import-untyped, unused-ignore]
from reportlab.lib.pagesizes import A4, landscape  # type: ignore[import-untyped, unused-ignore]
from reportlab.lib.styles import ParagraphStyle  # type: ignore[import-untyped, unused-ignore]
from reportlab.lib.units import mm  # type: ignore[import-untyped, unused-ignore]
from reportlab.pdfbase import pdfmetrics  # type: ignore[import-untyped, unused-ignore]
from reportlab.pdfbase.ttfonts import TTFError, TTFont  # type: ignore[import-untyped, unused-ignore]
from reportlab.pdfgen.canvas import Canvas  # type: ignore[import-untyped, unused-ignore]
from reportlab.platypus import (  # type: ignore[import-untyped, unused-ignore]
    BaseDocTemplate,
    Frame,
    PageTemplate,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)

from ledger.invoices.documents import Document, DocumentKind, PartyDetails, Statement
from ledger.money import currency_exponent, to_decimal

__all__ = ["format_money", "format_rate", "render_document", "render_statement"]

TITLES = {
    DocumentKind.CLIENT_INVOICE: "Invoice",
    DocumentKind.FEE_INVOICE: "Service fee invoice",
    DocumentKind.CREDIT_NOTE: "Credit note",
}

#: Reference keys in the order they are printed, with their labels; others follow, sorted.
REFERENCE_LABELS = {
    "contract": "Contract",
    "milestone": "Milestone",
    "week": "Week",
    "payment": "Payment",
    "refund": "Refund",
    "client_invoice": "Client invoice",
}

_INK = colors.HexColor("#1f2933")
_MUTED = colors.HexColor("#52606d")
_RULE = colors.HexColor("#9aa5b1")
_SHADE = colors.HexColor("#eef1f4")


# --- amounts -----------------------------------------------------------------


def format_money(minor: int, currency: str, locale: str = "en_US") -> str:
    """Minor units as the locale shows money: 100000 USD -> "$1,000.00", 1500 JPY -> "¥1,500"."""
    return _format_money(minor, currency, locale, iso_code=False)


def format_rate(rate: Decimal) -> str:
    """A rate as a percentage with at least two decimals: Decimal("0.1833") -> "18.33%".

    Finer rates keep all their digits (Decimal("0.12345") -> "12.345%"): never rounded.
    """
    percent = rate * 100
    cents = percent.quantize(Decimal("0.01"))
    return f"{cents if cents == percent else percent.normalize():f}%"


def _format_money(minor: int, currency: str, locale: str, *, iso_code: bool) -> str:
    exponent = currency_exponent(currency)
    pattern_text = Locale.parse(locale).currency_formats["standard"].pattern
    if iso_code:
        pattern_text = pattern_text.replace("¤", "¤¤")
    pattern = parse_pattern(pattern_text)
    # The ledger's exponent, not CLDR's currency digits: the value is exact, so
    # quantizing to its own number of places never rounds.
    pattern.frac_prec = (exponent, exponent)
    return format_currency(to_decimal(minor, currency), currency, format=pattern, locale=locale, currency_digits=False)


# --- fonts and text ----------------------------------------------------------


@dataclass(frozen=True)
class _Fonts:
    regular: str
    bold: str
    italic: str
    glyphs: frozenset[int]

    def can_draw(self, text: str) -> bool:
        return all(ord(ch) in self.glyphs or ch == "\n" for ch in text)

    def printable(self, text: str) -> str:
        """Text with what the font lacks replaced by its compatibility form (U+202F -> space)."""
        out = []
        for ch in text:
            if ord(ch) in self.glyphs or ch == "\n":
                out.append(ch)
            elif unicodedata.category(ch) == "Cf":
                continue  # bidi marks and the like: invisible anyway
            else:
                compatible = unicodedata.normalize("NFKC", ch)
                out.append(compatible if self.can_draw(compatible) else ch)
        return "".join(out)


_FONT_FILES = (
    ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf"),
    ("Vera.ttf", "VeraBd.ttf", "VeraIt.ttf"),  # bundled with reportlab
)


@functools.cache
def _fonts() -> _Fonts:
    for files in _FONT_FILES:
        try:
            faces = [
                TTFont(f"LedgerSans{style}", file) for style, file in zip(("", "-Bold", "-Italic"), files, strict=True)
            ]
        except TTFError:
            continue
        for face in faces:
            pdfmetrics.registerFont(face)
        names = [face.fontName for face in faces]
        pdfmetrics.registerFontFamily(names[0], normal=names[0], bold=names[1], italic=names[2], boldItalic=names[1])
        return _Fonts(regular=names[0], bold=names[1], italic=names[2], glyphs=frozenset(faces[0].face.charToGlyph))
    raise RuntimeError("no usable TrueType font: reportlab's bundled Vera.ttf is missing")  # pragma: no cover


def _money(minor: int, currency: str, locale: str) -> str:
    fonts = _fonts()
    text = fonts.printable(format_money(minor, currency, locale))
    if fonts.can_draw(text):
        return text
    return fonts.printable(_format_money(minor, currency, locale, iso_code=True))


def _shorten(text: str, font: str, size: float, width: float) -> str:
    """The text, cut with an ellipsis if it is wider than `width` (a footer must not run into the page number)."""
    if pdfmetrics.stringWidth(text, font, size) <= width:
        return text
    while text and pdfmetrics.stringWidth(text + "…", font, size) > width:
        text = text[:-1]
    return text.rstrip() + "…"


def _utc(moment: datetime) -> datetime:
    # Naive times are UTC by convention (SQLite does not keep the zone).
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _styles() -> dict[str, ParagraphStyle]:
    fonts = _fonts()
    base = ParagraphStyle("base", fontName=fonts.regular, fontSize=9, leading=12, textColor=_INK)
    return {
        "body": base,
        "small": ParagraphStyle("small", base, fontSize=8, leading=10.5, textColor=_MUTED),
        "italic": ParagraphStyle("italic", base, fontName=fonts.italic, textColor=_MUTED),
        "label": ParagraphStyle("label", base, fontName=fonts.bold, fontSize=7.5, leading=10, textColor=_MUTED),
        "label_right": ParagraphStyle(
            "label_right", base, fontName=fonts.bold, fontSize=7.5, leading=10, textColor=_MUTED, alignment=TA_RIGHT
        ),
        "key": ParagraphStyle("key", base, fontName=fonts.bold, textColor=_MUTED),
        "title": ParagraphStyle("title", base, fontName=fonts.bold, fontSize=20, leading=24),
        "strong": ParagraphStyle("strong", base, fontName=fonts.bold),
        "strong_right": ParagraphStyle("strong_right", base, fontName=fonts.bold, alignment=TA_RIGHT),
        "cell": ParagraphStyle("cell", base, fontSize=8, leading=10),
        "cell_right": ParagraphStyle("cell_right", base, fontSize=8, leading=10, alignment=TA_RIGHT),
    }


def _p(text: str, style: ParagraphStyle) -> Paragraph:
    markup = escape(_fonts().printable(text)).replace("\n", "<br/>")
    return Paragraph(markup, style)


# --- pages -------------------------------------------------------------------


def _paged_canvas(footer_left: str, created_at: datetime, margin: float) -> type[Canvas]:
    """A canvas that numbers pages "Page n of N" and dates the file `created_at`."""
    stamp = _utc(created_at).strftime("D:%Y%m%d%H%M%S+00'00'")

    class PagedCanvas(Canvas):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.setDateFormatter(lambda *_: stamp)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for number, state in enumerate(self._pages, start=1):
                self.__dict__.update(state)
                self._draw_footer(number, total)
                super().showPage()
            super().save()

        def _draw_footer(self, number: int, total: int) -> None:
            fonts = _fonts()
            width, _ = self._pagesize
            self.saveState()
            self.setStrokeColor(_RULE)
            self.setLineWidth(0.5)
            self.line(margin, 12 * mm, width - margin, 12 * mm)
            self.setFont(fonts.regular, 7.5)
            self.setFillColor(_MUTED)
            self.drawString(
                margin, 8 * mm, _shorten(fonts.printable(footer_left), fonts.regular, 7.5, width - 2 * margin - 80)
            )
            self.drawRightString(width - margin, 8 * mm, f"Page {number} of {total}")
            self.restoreState()

    return PagedCanvas


def _build(
    story: list[Any],
    *,
    pagesize: tuple[float, float],
    margin: float,
    title: str,
    author: str,
    subject: str,
    footer: str,
    created_at: datetime,
) -> bytes:
    buffer = io.BytesIO()
    template = BaseDocTemplate(
        buffer,
        pagesize=pagesize,
        leftMargin=margin,
        rightMargin=margin,
        topMargin=15 * mm,
        bottomMargin=20 * mm,
        title=title,
        author=author,
        subject=subject,
        creator="ledger",
        invariant=1,  # fixed file id and timestamps: same input, same bytes
    )
    # No frame padding, so the content lines up with the margins and the footer rule.
    frame = Frame(margin, 20 * mm, template.width, template.height, 0, 0, 0, 0, id="body")
    template.addPageTemplates([PageTemplate(id="page", frames=[frame], pagesize=pagesize)])
    template.build(story, canvasmaker=_paged_canvas(footer, created_at, margin))
    return buffer.getvalue()


def _table(
    rows: Sequence[Sequence[Any]], widths: Sequence[float], style: Iterable[tuple[Any, ...]], **kw: Any
) -> Table:
    table = Table(rows, colWidths=list(widths), hAlign="LEFT", **kw)
    table.setStyle(TableStyle(list(style)))
    return table


def _key_values(
    pairs: Sequence[tuple[str, str]], widths: tuple[float, float], styles: dict[str, ParagraphStyle]
) -> Table:
    rows = [[_p(key, styles["key"]), _p(value, styles["body"])] for key, value in pairs]
    padding = [("LEFTPADDING", (0, 0), (-1, -1), 0), ("TOPPADDING", (0, 0), (-1, -1), 1)]
    return _table(rows, widths, [("VALIGN", (0, 0), (-1, -1), "TOP"), *padding, ("BOTTOMPADDING", (0, 0), (-1, -1), 1)])


# --- documents ---------------------------------------------------------------


def _party_lines(party: PartyDetails, locale: str) -> list[str]:
    """The known fields of a party, one per printed line; unknown ones are left out."""
    lines = []
    legal_name = (party.legal_name or "").strip()
    if legal_name and legal_name != party.display_name.strip():
        lines.append(legal_name)
    lines.extend(line.strip() for line in (party.address or "").splitlines() if line.strip())
    country = (party.country or "").strip()
    if country:
        lines.append(Locale.parse(locale).territories.get(country.upper(), country))
    tax_id = (party.tax_id or "").strip()
    if tax_id:
        lines.append(f"Tax ID: {tax_id}")
    return lines


def _party_block(label: str, party: PartyDetails, locale: str, styles: dict[str, ParagraphStyle]) -> list[Paragraph]:
    details = "\n".join(_party_lines(party, locale))
    block = [_p(label, styles["label"]), _p(party.display_name, styles["strong"])]
    return [*block, _p(details, styles["body"])] if details else block


def _references(document: Document) -> list[tuple[str, str]]:
    known = [(label, document.references[key]) for key, label in REFERENCE_LABELS.items() if key in document.references]
    others = sorted(
        (key.replace("_", " ").capitalize(), value)
        for key, value in document.references.items()
        if key not in REFERENCE_LABELS
    )
    return known + others


def _fit(text: str, style: ParagraphStyle, width: float) -> Paragraph:
    """A one-line cell whose font shrinks if needed, so a long amount never runs into the next column."""
    natural = pdfmetrics.stringWidth(text, style.fontName, style.fontSize)
    if natural > width:
        # A little under the exact ratio, or rounding wraps the last digit onto a second line.
        style = ParagraphStyle(f"{style.name}-fitted", style, fontSize=style.fontSize * 0.97 * width / natural)
    return _p(text, style)


def _lines_table(document: Document, locale: str, width: float, styles: dict[str, ParagraphStyle]) -> Table:
    """Lines, then the total between a single and a double rule (and for fees, the blended rate)."""
    rated = any(line.rate is not None or line.quantity_amount is not None for line in document.lines)
    last = "Credited" if document.kind is DocumentKind.CREDIT_NOTE else ("Fee" if rated else "Amount")
    total_label = "Total credited" if document.kind is DocumentKind.CREDIT_NOTE else "Total"
    if rated:
        widths = [width - 90 * mm, 38 * mm, 22 * mm, 30 * mm]
        header = ["Description", "Amount billed in tier", "Rate", last]
    else:
        widths = [width - 40 * mm, 40 * mm]
        header = ["Description", last]

    def cell(column: int, text: str, style: str = "cell_right") -> Paragraph:
        return _fit(text, styles[style], widths[column] - 12)  # 6 points of padding either side

    def money(column: int, minor: int | None, style: str = "cell_right") -> Paragraph | str:
        return "" if minor is None else cell(column, _money(minor, document.currency, locale), style)

    if rated:
        body = [
            [
                _p(line.description, styles["cell"]),
                money(1, line.quantity_amount),
                "" if line.rate is None else cell(2, format_rate(line.rate)),
                money(3, line.amount),
            ]
            for line in document.lines
        ]
        billed = [line.quantity_amount for line in document.lines]
        # The sum billed beside the total fee lets a reader check the blended rate.
        billed_total = None if None in billed else sum(q for q in billed if q is not None)
        total = [
            _p(total_label, styles["strong"]),
            money(1, billed_total, "strong_right"),
            "",
            money(3, document.total, "strong_right"),
        ]
    else:
        body = [[_p(line.description, styles["cell"]), money(1, line.amount)] for line in document.lines]
        total = [_p(total_label, styles["strong"]), money(1, document.total, "strong_right")]
    rows: list[list[Any]] = [
        [_p(header[0], styles["label"]), *(_p(h, styles["label_right"]) for h in header[1:])],
        *body,
        total,
    ]
    total_row = len(rows) - 1
    if document.blended_rate is not None:
        label = _p("Blended rate (total fee ÷ amount billed)", styles["cell"])
        rate = cell(2 if rated else 1, format_rate(document.blended_rate))
        rows.append([label, *[""] * (len(widths) - 3), rate, ""] if rated else [label, rate])
    style = [
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (0, -1), 0),
        ("RIGHTPADDING", (-1, 0), (-1, -1), 0),
        ("TOPPADDING", (0, 0), (-1, -1), 4),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 4),
        ("LINEBELOW", (0, 0), (-1, 0), 0.75, _INK),
        *([("LINEBELOW", (0, 1), (-1, total_row - 1), 0.25, _RULE)] if body else []),
        ("LINEABOVE", (0, total_row), (-1, total_row), 0.75, _INK),
        ("LINEBELOW", (1, total_row), (-1, total_row), 0.75, _INK, 0, None, None, 2),  # double rule
    ]
    return _table(rows, widths, style, repeatRows=1)


def render_document(document: Document, *, locale: str = "en_US") -> bytes:
    """The document as an A4 PDF: header, parties, references, lines, totals, notes."""
    styles = _styles()
    margin = 20 * mm
    width = A4[0] - 2 * margin
    title = TITLES[document.kind]
    issued = _utc(document.issued_at)

    meta = [("Number", document.number), ("Issue date", issued.date().isoformat()), ("Currency", document.currency)]
    if document.corrects:
        meta.append(("Corrects", document.corrects))
    header = _table(
        [[_p(title, styles["title"]), _key_values(meta, (24 * mm, 46 * mm), styles)]],
        [width - 70 * mm, 70 * mm],
        [
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), 0),
            ("RIGHTPADDING", (0, 0), (-1, -1), 0),
        ],
    )
    recipient_label = "Credited to" if document.kind is DocumentKind.CREDIT_NOTE else "Bill to"
    parties = _table(
        [
            [
                _party_block("From", document.issuer, locale, styles),
                _party_block(recipient_label, document.recipient, locale, styles),
            ]
        ],
        [width / 2, width / 2],
        [("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0)],
    )
    story: list[Any] = [header, Spacer(0, 8 * mm), parties, Spacer(0, 5 * mm)]
    if document.kind is DocumentKind.CLIENT_INVOICE:
        story.append(_p(f"Issued by the platform on behalf of {document.issuer.display_name}.", styles["italic"]))
    if document.corrects:
        story.append(_p(f"Corrects invoice {document.corrects}.", styles["strong"]))
    references = _references(document)
    if references:
        story += [Spacer(0, 3 * mm), _key_values(references, (28 * mm, width - 28 * mm), styles)]
    story += [Spacer(0, 6 * mm), _lines_table(document, locale, width, styles)]
    if document.notes:
        story.append(Spacer(0, 6 * mm))
        story += [_p(note, styles["small"]) for note in document.notes]
    return _build(
        story,
        pagesize=A4,
        margin=margin,
        title=f"{title} {document.number}",
        author=document.issuer.display_name,
        subject=f"{title} {document.number} to {document.recipient.display_name}",
        footer=f"{title} {document.number} · {document.issuer.display_name} · issued {issued.date().isoformat()}",
        created_at=issued,
    )


# --- statements --------------------------------------------------------------


def _timestamp(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%d %H:%M:%S")


def render_statement(statement: Statement, *, locale: str = "en_US") -> bytes:
    """The statement as a landscape A4 PDF; the table's header repeats on every page."""
    styles = _styles()
    margin = 15 * mm
    width = landscape(A4)[0] - 2 * margin
    period = f"[{_timestamp(statement.period_from)}, {_timestamp(statement.period_to)}) UTC: the end is not included"

    def money(minor: int) -> str:
        return _money(minor, statement.currency, locale)

    summary = [
        ("Subject", statement.subject),
        ("Accounts", ", ".join(statement.accounts)),
        ("Currency", statement.currency),
        ("Period", period),
        ("Balance side", f"{statement.normal_side} (balances are positive on this side)"),
        ("Opening balance", money(statement.opening_balance)),
        ("Total debits", money(statement.total_debits)),
        ("Total credits", money(statement.total_credits)),
        ("Closing balance", money(statement.closing_balance)),
    ]
    header = ["Posted at (UTC)", "Entry", "Account", "Reference", "Kind", "Debit", "Credit", "Balance"]
    widths = [34 * mm, 17 * mm, 46 * mm, 58 * mm, 26 * mm]
    widths += [(width - sum(widths)) / 3] * 3

    def cell(column: int, text: str, style: str = "cell_right") -> Paragraph:
        return _fit(text, styles[style], widths[column] - 8)  # 4 points of padding either side

    def amount(column: int, minor: int, style: str = "cell_right") -> Paragraph:
        return cell(column, money(minor), style)

    def labelled(label: str, amounts: dict[int, Paragraph]) -> list[Any]:
        return [_p(label, styles["strong"]), "", "", "", "", *(amounts.get(column, "") for column in (5, 6, 7))]

    rows: list[list[Any]] = [
        [_p(h, styles["label"] if i < 5 else styles["label_right"]) for i, h in enumerate(header)],
        labelled("Opening balance", {7: amount(7, statement.opening_balance, "strong_right")}),
    ]
    for line in statement.lines:
        rows.append(
            [
                cell(0, _timestamp(line.posted_at), "cell"),
                cell(1, str(line.entry_id)),
                _p(line.account, styles["cell"]),
                _p(line.reference, styles["cell"]),
                _p(line.kind, styles["cell"]),
                amount(5, line.debit) if line.debit else "",
                amount(6, line.credit) if line.credit else "",
                amount(7, line.running_balance),
            ]
        )
    totals = len(rows)
    debits, credits = statement.total_debits, statement.total_credits
    rows.append(labelled("Totals", {5: amount(5, debits, "strong_right"), 6: amount(6, credits, "strong_right")}))
    rows.append(labelled("Closing balance", {7: amount(7, statement.closing_balance, "strong_right")}))
    style = [
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 4),
        ("RIGHTPADDING", (0, 0), (-1, -1), 4),
        ("TOPPADDING", (0, 0), (-1, -1), 3),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
        ("LINEBELOW", (0, 0), (-1, 0), 0.75, _INK),
        ("SPAN", (0, 1), (4, 1)),
        ("LINEBELOW", (0, 1), (-1, 1), 0.25, _RULE),
        *([("ROWBACKGROUNDS", (0, 2), (-1, totals - 1), [colors.white, _SHADE])] if statement.lines else []),
        ("LINEABOVE", (0, totals), (-1, totals), 0.75, _INK),
        ("SPAN", (0, totals), (4, totals)),
        ("SPAN", (0, totals + 1), (4, totals + 1)),
        ("LINEBELOW", (-1, -1), (-1, -1), 0.75, _INK, 0, None, None, 2),  # double rule under the closing balance
        # The totals never stand alone on a last page: the last two lines go with them.
        ("NOSPLIT", (0, max(2, totals - 2)), (-1, -1)),
    ]
    story: list[Any] = [
        _p("Statement", styles["label"]),
        _p(statement.title, styles["title"]),
        Spacer(0, 4 * mm),
        _key_values(summary, (36 * mm, width - 36 * mm), styles),
        Spacer(0, 6 * mm),
        _table(rows, widths, style, repeatRows=1),
    ]
    return _build(
        story,
        pagesize=landscape(A4),
        margin=margin,
        title=f"Statement: {statement.title}",
        author="ledger",
        subject=f"{statement.subject}, {period}",
        footer=f"Statement {statement.subject} · {statement.currency} · {period}",
        created_at=statement.period_to,
    )
