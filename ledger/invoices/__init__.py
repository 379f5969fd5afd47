"""Invoices, credit notes and statements for finance.

On every release the platform issues, in the same transaction as the release's
journal entry, an invoice from the freelancer to the client and a service-fee
invoice to the freelancer; a refund after release issues credit notes that cite
the invoices they correct (`issuing.py`). Documents are immutable data
(`documents.py`) with gapless numbers per series and year; `render.py` draws PDFs
from them (the only reportlab importer). Statements (`statements.py`) and reports
(`reports.py`) serve finance; `checks.py` adds invariant 8 to `ledger audit`.
"""
