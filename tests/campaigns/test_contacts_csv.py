"""Reading a contact list's CSV (campaigns.contacts.parse) with bounded work:
the separator chosen from a short prefix of the header, every line measured
before it is parsed, and a quote that is never closed reported on its row
instead of swallowing the rows after it."""

from __future__ import annotations

from typing import Any

import pytest

from campaigns.contacts import QUOTE_NOT_CLOSED, SNIFF_CHARS, CsvRejected, detect_dialect, parse


def errors(text: str) -> list[tuple[int, str]]:
    return [(e.row, e.message) for e in parse(text)[2].errors]


def names(text: str) -> dict[str, str]:
    """The imported contacts' names by number."""
    return {phone: fields.get("name", "") for phone, fields in parse(text)[1].items()}


# -- the separator -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "delimiter"),
    [
        ("phone,name,city", ","),
        ("phone;name;city", ";"),
        ("phone\tname\tcity", "\t"),
        ("phone", ","),  # one column: nothing to tell, the comma
        ('"phone;a;b",name', ","),  # separators inside quotes do not count
        ('"a,""b,c,d",x;phone;y', ";"),  # nor do they after a doubled quote
        ("phone;name,city", ","),  # as many of each: the first of ",;\t"
    ],
)
def test_the_separator_is_the_most_frequent_one_outside_quotes_in_the_header(header: str, delimiter: str) -> None:
    assert detect_dialect(header + "\r\n+12015550001,x;y\tz\n").delimiter == delimiter


def test_separators_followed_by_spaces_let_quoted_values_follow_a_space() -> None:
    assert detect_dialect("phone, name\n").skipinitialspace
    assert not detect_dialect("phone, name,city\n").skipinitialspace
    assert names('phone, name\n+12015550001, "Ed, Jr"\n') == {"+12015550001": "Ed, Jr"}


def test_only_the_first_characters_of_the_header_decide_the_separator() -> None:
    header = "phone;name;" + "x" * SNIFF_CHARS + "," * 100
    assert detect_dialect(header + "\n").delimiter == ";"


def test_a_header_with_too_many_columns_is_refused_on_the_count() -> None:
    with pytest.raises(CsvRejected, match=r"^The header has 5001 columns; at most 50 are accepted\.$"):
        parse("phone" + ",x" * 5000 + "\n+12015550001\n")


# -- the line limit ------------------------------------------------------------------------------


@pytest.fixture
def short_lines(settings: Any) -> int:
    settings.BLAST_CSV_MAX_LINE_BYTES = 1024
    return 1024


def test_a_line_over_the_limit_refuses_the_file_naming_its_row(short_lines: int) -> None:
    text = "phone,name\n+12015550001,Ana\n+12015550002," + "x" * 1012 + "\n+12015550003,Cy\n"
    with pytest.raises(CsvRejected) as refused:
        parse(text)
    assert str(refused.value) == "Row 3 has a line of 1025 bytes; a line may be at most 1024 bytes."
    # At the limit, the line is read (and its value refused for its own length).
    assert errors(text.replace("x" * 1012, "x" * 1011))[0][0] == 3


def test_the_line_limit_counts_bytes_and_comes_before_the_header_is_read(short_lines: int) -> None:
    with pytest.raises(CsvRejected, match=r"^Row 2 has a line of 1213 bytes"):
        parse("phone,name\n+12015550001," + "é" * 600 + "\n")
    with pytest.raises(CsvRejected, match=r"^Row 1 has a line of 1048576 bytes"):
        parse(('phone,"' + 'a,"' * 350_000)[: 1024 * 1024])


def test_blank_rows_count_towards_the_most_rows(settings: Any) -> None:
    settings.BLAST_CSV_MAX_ROWS = 3
    assert parse("phone\n+12015550001\n\n\n")[2].rows == 1
    with pytest.raises(CsvRejected, match="more than 3 rows"):
        parse("phone\n+12015550001\n" + "\n" * 3)


# -- quotes --------------------------------------------------------------------------------------


def test_a_value_with_line_breaks_is_one_row() -> None:
    text = 'phone,name,city\n+12015550001,"Ana\nMaria, ""Mia""",Rio\n+12015550002,x\n+12015550003,Cy,"\n"\n'
    _, parsed, result = parse(text)
    assert parsed["+12015550001"] == {"name": 'Ana\nMaria, "Mia"', "city": "Rio"}
    assert result.rows == 3 and result.invalid == 0


def test_a_quote_never_closed_is_reported_on_its_row_and_the_rows_after_it_are_imported() -> None:
    text = 'phone,name\n+12015550001,Ana\n+12015550002,"Bo\n+12015550003,Cy\n\n+12015550004,Di\n'
    _, parsed, result = parse(text)
    assert [(e.row, e.message) for e in result.errors] == [(3, QUOTE_NOT_CLOSED)]
    assert sorted(parsed) == ["+12015550001", "+12015550003", "+12015550004"]
    assert (result.rows, result.invalid) == (4, 1)


def test_a_quote_closed_by_a_later_rows_quote_is_reported_too() -> None:
    # Every value quoted, one closing quote missing: the next row's first
    # quote closes it, followed by text where only a separator may follow.
    text = '"phone","name"\n"+12015550001","Ana\n"+12015550002","Bo"\n"+12015550003","Cy"\n'
    assert errors(text) == [(2, QUOTE_NOT_CLOSED)]
    assert names(text) == {"+12015550002": "Bo", "+12015550003": "Cy"}


def test_a_quote_left_open_past_the_line_limit_is_reported_and_the_rows_after_it_imported(short_lines: int) -> None:
    rows = "".join(f"+1201555{n:04d},name {n}\n" for n in range(2, 200))  # about 4 KB without a quote
    _, parsed, result = parse('phone,name\n+12015550001,"Ana\n' + rows + '+12015550999,"Zoe"\n')
    assert [e.row for e in result.errors] == [2]
    assert len(parsed) == 199 and parsed["+12015550999"] == {"name": "Zoe"}


def test_quotes_too_unbalanced_to_read_around_refuse_the_file() -> None:
    # Each line reopens a quote the line before left open: every row would be
    # read to the end of the file again.
    with pytest.raises(CsvRejected, match=r"^The file's quotes are not balanced from row 3 on"):
        parse('phone,x\n+12015550001,y\n+12015550002,"z\n' + 'a",",\n' * 20_000)


def test_a_header_with_a_quote_never_closed_is_refused() -> None:
    with pytest.raises(CsvRejected, match="a quote opened in it is not closed"):
        parse('phone,"name\n+12015550001,Ana\n')
