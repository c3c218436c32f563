"""Contact list uploads: CSV in, normalised and merged contacts out.

The format (docs/CAMPAIGNS.md): UTF-8 text (a byte order mark is fine),
comma-, semicolon- or tab-separated (detected from the header), a header row
naming the columns. One column is ``phone``; every other column is a custom
field that templates use as ``{{name}}``. Header names are trimmed and
lower-cased and must be template field names (letters, digits and ``_``,
starting with a letter or ``_``).

Each data row is checked on its own: a row with an invalid number, more
values than the header has columns or a value longer than
:data:`MAX_VALUE` is reported (its row number as a spreadsheet shows it,
the header being row 1, and why) and skipped; the others are imported.
Numbers are normalised to E.164 (:mod:`campaigns.phones`). Rows with the
same number, in the file or already in the list, are merged into one
contact: a non-empty value replaces the stored one, an empty cell keeps it.

Problems with the file as a whole (not UTF-8, no ``phone`` column, bad or
repeated header names, no data rows, more than ``BLAST_CSV_MAX_ROWS`` rows,
a list that would outgrow ``BLAST_CONTACT_LIST_MAX_CONTACTS``) reject it
entirely with :class:`CsvRejected`, and nothing is imported.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from campaigns import conf, phones
from campaigns.models import Contact, ContactList
from campaigns.templating import NAME

PHONE = "phone"
MAX_VALUE = 1000
MAX_COLUMNS = 50
MAX_ERRORS_SHOWN = 100
_IN_CHUNK = 900  # under SQLite's limit on query parameters


class CsvRejected(ValueError):
    """The whole file is refused; ``str()`` says why, for a person."""


@dataclass(frozen=True)
class RowError:
    row: int
    message: str


@dataclass
class ImportResult:
    rows: int = 0  # data rows read
    created: int = 0
    updated: int = 0  # existing contacts whose fields changed
    unchanged: int = 0  # existing contacts the file repeated as they were
    duplicates: int = 0  # rows merged into an earlier row of the same file
    invalid: int = 0  # rows refused
    errors: list[RowError] = field(default_factory=list)  # the first MAX_ERRORS_SHOWN
    fields: list[str] = field(default_factory=list)  # the list's custom fields after the import
    contacts: int = 0  # the list's size after the import

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "duplicates": self.duplicates,
            "invalid": self.invalid,
            "errors": [{"row": e.row, "message": e.message} for e in self.errors],
            "errors_truncated": self.invalid > len(self.errors),
            "fields": self.fields,
            "contacts": self.contacts,
        }


def decode(data: bytes) -> str:
    """The text of an upload, or :class:`CsvRejected` when it is not UTF-8."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CsvRejected(
            f"The file is not UTF-8 text (byte {exc.start + 1}): save it as 'CSV UTF-8' and upload it again."
        ) from None
    return text


def check_text(text: str) -> str:
    """``text``, or :class:`CsvRejected` when it holds NUL characters (a
    binary file, or a spreadsheet saved in another format)."""
    if "\x00" in text:
        raise CsvRejected("The file is not valid CSV text: it holds NUL characters (is it a spreadsheet file?).")
    return text


def _dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    header = text.split("\n", 1)[0]
    try:
        return csv.Sniffer().sniff(header, delimiters=",;\t")
    except csv.Error:
        return csv.excel


def _header(cells: list[str]) -> list[str]:
    names = [cell.strip().lower() for cell in cells]
    if len(names) > MAX_COLUMNS:
        raise CsvRejected(f"The header has {len(names)} columns; at most {MAX_COLUMNS} are accepted.")
    problems = []
    for position, name in enumerate(names, start=1):
        if not name:
            problems.append(f"column {position} has no name")
        elif not NAME.match(name):
            problems.append(
                f"column {position} '{name[:40]}' is not a field name (letters, digits and _, "
                "starting with a letter or _)"
            )
    repeated = sorted({name for name in names if name and names.count(name) > 1})
    if repeated:
        problems.append("repeated column names: " + ", ".join(repeated))
    if PHONE not in names:
        found = ", ".join(n for n in names if n) or "nothing"
        problems.append(f"no '{PHONE}' column (found: {found[:200]})")
    if problems:
        raise CsvRejected("The header row is not usable: " + "; ".join(problems) + ".")
    return names


def parse(text: str, region: str | None = None) -> tuple[list[str], dict[str, dict[str, str]], ImportResult]:
    """Read the CSV ``text``: (header names, contacts by E.164 number with
    their merged fields, the counts and row errors so far)."""
    max_rows = int(conf.get("BLAST_CSV_MAX_ROWS"))
    result = ImportResult()
    contacts: dict[str, dict[str, str]] = {}
    reader = csv.reader(io.StringIO(text, newline=""), _dialect(text))
    record = 0
    try:
        header: list[str] | None = None
        for cells in reader:
            record += 1
            if header is None:
                header = _header(cells)
                continue
            if not any(cell.strip() for cell in cells):
                continue  # blank line
            result.rows += 1
            if result.rows > max_rows:
                raise CsvRejected(f"The file has more than {max_rows} rows: split it into several uploads.")
            problem = _row(cells, header, region, contacts, result)
            if problem is not None:
                result.invalid += 1
                if len(result.errors) < MAX_ERRORS_SHOWN:
                    result.errors.append(RowError(record, problem))
    except csv.Error as exc:
        raise CsvRejected(f"The file is not valid CSV near row {record + 1}: {exc}.") from None
    if header is None:
        raise CsvRejected("The file is empty: it needs a header row with a 'phone' column, then one row per contact.")
    if result.rows == 0:
        raise CsvRejected("The file has a header row but no contacts.")
    return header, contacts, result


def _row(
    cells: list[str],
    header: list[str],
    region: str | None,
    contacts: dict[str, dict[str, str]],
    result: ImportResult,
) -> str | None:
    """Merge one data row into ``contacts``; the error message, or None."""
    if len(cells) > len(header):
        extra = cells[len(header) :]
        if any(cell.strip() for cell in extra):
            return f"{len(cells)} values but the header has {len(header)} columns (a separator inside a value?)."
    values = {name: (cells[i].strip() if i < len(cells) else "") for i, name in enumerate(header)}
    for name, value in values.items():
        if len(value) > MAX_VALUE:
            return f"the value of '{name}' is {len(value)} characters long; at most {MAX_VALUE} are accepted."
    raw_phone = values.pop(PHONE)
    if not raw_phone:
        return "the phone number is empty."
    try:
        phone = phones.normalise(raw_phone, region)
    except phones.InvalidPhone as exc:
        return str(exc)
    earlier = contacts.get(phone)
    if earlier is None:
        contacts[phone] = values
    else:
        result.duplicates += 1
        earlier.update({name: value for name, value in values.items() if value})
    return None


def _merge(stored: dict[str, Any], new: dict[str, str]) -> dict[str, Any]:
    merged = dict(stored)
    merged.update({name: value for name, value in new.items() if value})
    for name in new:
        merged.setdefault(name, "")
    return merged


def import_csv(
    contact_list: ContactList, data: bytes | str, region: str | None = None, now: dt.datetime | None = None
) -> ImportResult:
    """Import an upload into ``contact_list`` (see the module docstring).

    One transaction, with the list's row locked: two uploads to one list
    take turns, and a rejected file changes nothing.
    """
    now = now or timezone.now()
    max_bytes = int(conf.get("BLAST_CSV_MAX_BYTES"))
    size = len(data.encode() if isinstance(data, str) else data)
    if size > max_bytes:
        raise CsvRejected(f"The file is {size} bytes; at most {max_bytes} are accepted.")
    text = check_text(data if isinstance(data, str) else decode(data))
    header, parsed, result = parse(text, region or conf.get("BLAST_DEFAULT_REGION") or None)
    custom = [name for name in header if name != PHONE]
    with transaction.atomic():
        locked = ContactList.objects.select_for_update().get(pk=contact_list.pk)
        phones_in_file = list(parsed)
        existing: dict[str, Contact] = {}
        for start in range(0, len(phones_in_file), _IN_CHUNK):
            chunk = phones_in_file[start : start + _IN_CHUNK]
            for contact in Contact.objects.filter(contact_list=locked, phone__in=chunk).only("id", "phone", "fields"):
                existing[contact.phone] = contact
        new_phones = [phone for phone in phones_in_file if phone not in existing]
        limit = int(conf.get("BLAST_CONTACT_LIST_MAX_CONTACTS"))
        size_before = Contact.objects.filter(contact_list=locked).count()
        if size_before + len(new_phones) > limit:
            raise CsvRejected(
                f"The list would hold {size_before + len(new_phones)} contacts; a list holds at most {limit}."
            )
        changed: list[Contact] = []
        for phone, contact in existing.items():
            merged = _merge(contact.fields or {}, parsed[phone])
            if merged != contact.fields:
                contact.fields, contact.updated_at = merged, now
                changed.append(contact)
        Contact.objects.bulk_update(changed, ["fields", "updated_at"], batch_size=500)
        Contact.objects.bulk_create(
            [
                Contact(
                    contact_list=locked,
                    phone=phone,
                    fields=_merge({}, parsed[phone]),
                    created_at=now,
                    updated_at=now,
                )
                for phone in new_phones
            ],
            batch_size=500,
        )
        fields = list(locked.fields or [])
        fields += [name for name in custom if name not in fields]
        ContactList.objects.filter(pk=locked.pk).update(fields=fields, updated_at=now)
        contact_list.fields, contact_list.updated_at = fields, now
    result.created = len(new_phones)
    result.updated = len(changed)
    result.unchanged = len(existing) - len(changed)
    result.fields = fields
    result.contacts = size_before + len(new_phones)
    return result


def upsert_contact(
    contact_list: ContactList, phone: str, fields: dict[str, str], now: dt.datetime | None = None
) -> bool:
    """Add one contact (``phone`` in E.164), or merge ``fields`` into the
    contact with that number as an upload would. True when it is new."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = ContactList.objects.select_for_update().get(pk=contact_list.pk)
        contact = Contact.objects.filter(contact_list=locked, phone=phone).first()
        if contact is not None:
            merged = _merge(contact.fields or {}, fields)
            if merged != contact.fields:
                Contact.objects.filter(pk=contact.pk).update(fields=merged, updated_at=now)
        else:
            limit = int(conf.get("BLAST_CONTACT_LIST_MAX_CONTACTS"))
            if Contact.objects.filter(contact_list=locked).count() >= limit:
                raise CsvRejected(f"The list holds {limit} contacts, its maximum.")
            Contact.objects.create(
                contact_list=locked, phone=phone, fields=_merge({}, fields), created_at=now, updated_at=now
            )
        known = list(locked.fields or [])
        added = [name for name in fields if name not in known]
        if added:
            ContactList.objects.filter(pk=locked.pk).update(fields=known + added, updated_at=now)
    return contact is None
