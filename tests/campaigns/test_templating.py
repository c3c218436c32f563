"""Templates: {{field}} variables, {a|b} spintax, clear errors."""

from __future__ import annotations

import random

import pytest

from campaigns.templating import TemplateError, parse


def render(source: str, seed: int = 1, **values: str) -> str:
    return parse(source).render(values, random.Random(seed))


def test_variables_are_replaced_by_the_contacts_values() -> None:
    assert render("Hi {{ name }}, see you in {{city}}.", name="Ana", city="Rio") == "Hi Ana, see you in Rio."


def test_a_missing_value_renders_empty() -> None:
    assert render("Hi {{name}}!") == "Hi !"


def test_spintax_picks_every_option_over_many_draws_and_nothing_else() -> None:
    seen = {render("{Hi|Hello|Hey} {{name}}", seed=seed, name="Bo") for seed in range(200)}
    assert seen == {"Hi Bo", "Hello Bo", "Hey Bo"}


def test_spintax_nests_and_options_may_be_empty() -> None:
    seen = {render("{Hi|Hello {there|friend}}{!|}", seed=seed) for seed in range(300)}
    assert seen == {"Hi!", "Hi", "Hello there!", "Hello there", "Hello friend!", "Hello friend"}


def test_the_same_seed_renders_the_same_text() -> None:
    assert render("{a|b|c|d|e|f}", seed=42) == render("{a|b|c|d|e|f}", seed=42)


def test_escapes_and_a_lone_pipe_are_literal() -> None:
    assert render(r"use \{code\} here | or \| and \\") == "use {code} here | or | and \\"


def test_fields_lists_every_variable_even_inside_spintax() -> None:
    assert parse("{Hi {{first}}|Hello {{last}}} {{first}}").fields == {"first", "last"}


def test_unknown_fields_are_named_with_what_the_list_has() -> None:
    with pytest.raises(TemplateError) as caught:
        parse("Hi {{name}}, your {{plan}} ends on {{ends}}").check_fields(["name", "city"])
    assert str(caught.value) == "Unknown template fields {{ends}}, {{plan}}: the contact list has city, name, phone."


def test_phone_is_always_a_known_field() -> None:
    parse("Your number: {{phone}}").check_fields([])


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "Hi {name}",
            "'{name}' has a single option: spintax picks one of several, as in {Hi|Hello}. "
            "For a variable write {{name}}.",
        ),
        ("{Hi|Hello", "'{' is not closed with '}'"),
        ("Hi}", "'}' closes nothing"),
        ("Hi {{name", "'{{' is not closed with '}}'"),
        ("Hi {{first name}}", "'{{first name}}' is not a field name"),
        ("Hi {{}}", "'{{}}' is not a field name"),
        ("line one\nline {two", "(at line 2, column 6)"),
    ],
)
def test_syntax_errors_say_what_and_where(source: str, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        parse(source)
    assert message in str(caught.value)


def test_deep_nesting_is_refused_not_a_crash() -> None:
    with pytest.raises(TemplateError, match="nests deeper"):
        parse("{a|" * 50 + "b" + "}" * 50)


def test_max_length_takes_the_longest_option_and_the_field_lengths() -> None:
    template = parse("{Hi|Hello} {{name}}!")
    assert template.max_length() == 7
    assert template.max_length({"name": 10}) == 17
