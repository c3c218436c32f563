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

A quoted value may hold separators and line breaks. A quote that opens a
value and is not closed where the value ends (it is still open at the end of
the file, or its closing quote is followed by something other than a
separator or a line end, or the row grows past ``BLAST_CSV_MAX_LINE_BYTES``
characters) would swallow the rows after it into that value: the row where
it opens is reported and skipped, and the lines after that row's first line
are read again as rows of their own.

Problems with the file as a whole (not UTF-8, no ``phone`` column, bad or
repeated header names, no data rows, more than ``BLAST_CSV_MAX_ROWS`` rows
after the header, blank ones included, a line longer than
``BLAST_CSV_MAX_LINE_BYTES``, quotes so unbalanced that reading around them
would read the file more than twice, a list that would outgrow
``BLAST_CONTACT_LIST_MAX_CONTACTS``) reject it entirely with
:class:`CsvRejected`, and nothing is imported.

The work is bounded by the size of the file: the separator is chosen from
the header's first :data:`SNIFF_CHARS` characters, every line is measured
before the CSV reader sees it, and no step costs more than a pass over what
it reads. A parse is a loop of short steps (a record each), so the thread it
runs in shares the interpreter with the event loop instead of holding it
(see ``campaigns.api.contact_lists.ContactListUploadView``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from campaigns import phones
from campaigns.models import Contact, ContactList
from campaigns.templating import NAME

PHONE = "phone"
MAX_VALUE = 1000
MAX_COLUMNS = 50
MAX_ERRORS_SHOWN = 100
DELIMITERS = ",;\t"  # in order of preference when the header has as many of each
# The header's first characters that decide the separator: a usable header
# (at most MAX_COLUMNS names of at most 64 characters) fits in them.
SNIFF_CHARS = 4096
QUOTE_NOT_CLOSED = (
    "a quote opened in this row is not closed where its value ends; the row is skipped and the lines after "
    'it are read as rows of their own (write "" for a quote inside a value).'
)
_IN_CHUNK = 900  # under SQLite's limit on query parameters
_BATCH = 500  # contacts written per query


class CsvRejected(ValueError):
    """The whole file is refused; ``str()`` says why, for a person."""


class ImportsBusy(RuntimeError):
    """Another upload kept this process busy for ``BLAST_CSV_IMPORT_WAIT_S``;
    nothing was read. ``retry_after``: seconds after which to try again."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("Another upload is being imported right now.")
        self.retry_after = retry_after


# One import at a time per process. An import is CPU work under the GIL:
# two in one process take as long as one after the other, but each more
# makes every other thread of the process (the event loop's included) wait
# longer for its turn. Processes scale out; threads do not.
_importing = threading.Lock()


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


def detect_dialect(text: str) -> type[csv.Dialect]:
    """The CSV dialect of ``text``, read from the first :data:`SNIFF_CHARS`
    characters of its header row: the separator among :data:`DELIMITERS`
    that occurs most often outside quotes there (a comma when none does),
    and separators followed by a space when every one there is.

    Linear in :data:`SNIFF_CHARS` whatever the file holds; ``csv.Sniffer``
    is not used, as its regular expressions cost the square of the line's
    length in one call that holds the interpreter.
    """
    prefix = text[:SNIFF_CHARS]
    for end in "\r\n":
        prefix = prefix.split(end, 1)[0]
    # Every other piece between quotes is outside them ("" inside a quoted
    # value splits into an empty piece, which keeps the count right).
    outside = prefix.split('"')[::2]
    counts = {d: sum(piece.count(d) for piece in outside) for d in DELIMITERS}
    delimiter = max(DELIMITERS, key=lambda d: counts[d])  # the first of the most frequent
    if counts[delimiter] == 0:
        return csv.excel
    spaced = sum(piece.count(delimiter + " ") for piece in outside) == counts[delimiter]
    return type("DetectedDialect", (csv.excel,), {"delimiter": delimiter, "skipinitialspace": spaced})


class _LineTooLong(Exception):
    """A line is longer than the limit; ``size`` is its length in bytes."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class _RecordTooLong(Exception):
    """The lines of one record are longer than the limit together."""


class _Lines(Iterator[str]):
    """The physical lines of a text for ``csv.reader`` (each ending at LF,
    CR or CR LF, as the reader reads them), each measured before the reader
    sees it: a line of more than ``max_bytes`` bytes raises
    :class:`_LineTooLong`, and the lines of one record (since :meth:`mark`)
    with more than ``max_bytes`` characters together raise
    :class:`_RecordTooLong`. Can go back to the line after a record's first
    (:meth:`resume_after`)."""

    def __init__(self, text: str, max_bytes: int) -> None:
        self.stream = io.StringIO(text, newline="")
        self.max_bytes = max_bytes
        self.number = 0  # physical lines read
        self.record_chars = 0

    def __next__(self) -> str:
        line = self.stream.readline()
        if not line:
            raise StopIteration
        self.number += 1
        # A character is at most 4 bytes: shorter lines need no encoding.
        if len(line) * 4 > self.max_bytes:
            size = len(line.rstrip("\r\n").encode())
            if size > self.max_bytes:
                raise _LineTooLong(size)
        self.record_chars += len(line)
        # A single line is bounded above (its end of line may add a character or two).
        if self.record_chars > self.max_bytes and self.record_chars > len(line):
            raise _RecordTooLong
        return line

    def tell(self) -> int:
        return self.stream.tell()

    def mark(self) -> tuple[int, int]:
        """A record starts here: its (offset, line number before it)."""
        self.record_chars = 0
        return self.stream.tell(), self.number

    def resume_after(self, offset: int, number: int) -> int:
        """Read again from the line after the one at ``offset`` (line
        ``number + 1``); the number of characters that will be read again."""
        end = self.stream.tell()
        self.stream.seek(offset)
        self.stream.readline()
        self.number = number + 1
        return end - self.stream.tell()


def _closed(record: str, dialect: type[csv.Dialect]) -> bool:
    """Whether every quote of ``record`` (one record's lines) closes where
    its value ends: followed by a separator, a line end or the end."""
    try:
        for _ in csv.reader(io.StringIO(record, newline=""), dialect, strict=True):
            pass
    except csv.Error:
        return False
    return True


def _header(cells: list[str]) -> list[str]:
    if len(cells) > MAX_COLUMNS:  # before any work per name
        raise CsvRejected(f"The header has {len(cells)} columns; at most {MAX_COLUMNS} are accepted.")
    names = [cell.strip().lower() for cell in cells]
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
    their merged fields, the counts and row errors so far).

    Row numbers count records as a spreadsheet shows them (the header is
    row 1, a blank line is a row, a value with line breaks is one row).
    """
    max_rows = int(settings.BLAST_CSV_MAX_ROWS)
    max_line = int(settings.BLAST_CSV_MAX_LINE_BYTES)
    dialect = detect_dialect(text)
    lines = _Lines(text, max_line)
    reader = csv.reader(lines, dialect)
    # Reading around unclosed quotes reads lines again; beyond this, the
    # quotes are too broken to read around.
    reread_budget = len(text)
    first_unclosed = 0
    result = ImportResult()
    contacts: dict[str, dict[str, str]] = {}
    header: list[str] | None = None
    record = 0
    while True:
        offset, line_before = lines.mark()
        failure: Exception | None = None
        try:
            cells = next(reader)
        except StopIteration:
            break
        except _LineTooLong as exc:
            raise CsvRejected(
                f"Row {record + 1} has a line of {exc.size} bytes; a line may be at most {max_line} bytes."
            ) from None
        except (csv.Error, _RecordTooLong) as exc:
            cells, failure = [], exc
        record += 1
        problem: str | None = None
        spans_lines = lines.number - line_before > 1
        if spans_lines and (failure is not None or not _closed(text[offset : lines.tell()], dialect)):
            if header is None:
                raise CsvRejected("The header row is not usable: a quote opened in it is not closed.")
            first_unclosed = first_unclosed or record
            reread_budget -= lines.resume_after(offset, line_before)
            if reread_budget < 0:
                raise CsvRejected(
                    f"The file's quotes are not balanced from row {first_unclosed} on (quotes opened and not "
                    'closed where their values end): write "" for a quote inside a value, and upload it again.'
                )
            reader = csv.reader(lines, dialect)
            cells, problem = [], QUOTE_NOT_CLOSED
        elif failure is not None:
            raise CsvRejected(f"The file is not valid CSV near row {record}: {failure}.")
        if header is None:
            header = _header(cells)
            continue
        # Blank rows count too: a file of blank lines costs as much to read.
        if record - 1 > max_rows:
            raise CsvRejected(f"The file has more than {max_rows} rows: split it into several uploads.")
        if problem is None and not any(cell.strip() for cell in cells):
            continue  # blank line
        result.rows += 1
        if problem is None:
            problem = _row(cells, header, region, contacts, result)
        if problem is not None:
            result.invalid += 1
            if len(result.errors) < MAX_ERRORS_SHOWN:
                result.errors.append(RowError(record, problem))
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
    take turns, and a rejected file changes nothing. One import runs at a
    time in a process: another waits up to ``BLAST_CSV_IMPORT_WAIT_S`` for
    its turn, then :class:`ImportsBusy`.
    """
    now = now or timezone.now()
    max_bytes = int(settings.BLAST_CSV_MAX_BYTES)
    size = len(data.encode() if isinstance(data, str) else data)
    if size > max_bytes:
        raise CsvRejected(f"The file is {size} bytes; at most {max_bytes} are accepted.")
    wait = float(settings.BLAST_CSV_IMPORT_WAIT_S)
    if not _importing.acquire(timeout=wait):
        raise ImportsBusy(retry_after=max(wait, 1.0))
    try:
        return _import(contact_list, data, region, now)
    finally:
        _importing.release()


def _import(contact_list: ContactList, data: bytes | str, region: str | None, now: dt.datetime) -> ImportResult:
    text = check_text(data if isinstance(data, str) else decode(data))
    header, parsed, result = parse(text, region or settings.BLAST_DEFAULT_REGION or None)
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
        limit = int(settings.BLAST_CONTACT_LIST_MAX_CONTACTS)
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
        Contact.objects.bulk_update(changed, ["fields", "updated_at"], batch_size=_BATCH)
        # Built one batch at a time: a hundred thousand model objects alive at
        # once make every garbage collection of the process long.
        for start in range(0, len(new_phones), _BATCH):
            Contact.objects.bulk_create(
                [
                    Contact(
                        contact_list=locked,
                        phone=phone,
                        fields=_merge({}, parsed[phone]),
                        created_at=now,
                        updated_at=now,
                    )
                    for phone in new_phones[start : start + _BATCH]
                ]
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
            limit = int(settings.BLAST_CONTACT_LIST_MAX_CONTACTS)
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
