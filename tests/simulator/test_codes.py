"""The simulator's close codes and the platform's classifier read PROTOCOL.md alike.

The simulator writes its table from PROTOCOL.md sections 4 and 5; the
platform classifies close codes in ``instances.reasons``. Neither imports
the other, so this test is where a disagreement shows.
"""

from __future__ import annotations

import pytest

from instances.reasons import CLOSE_CODES, Kind, Reason, from_close_code, kind_of
from simulator.codes import GATEWAY_CLOSE_CODES, PROTOCOL_CLOSE_CODES, CloseCode
from simulator.inputs import BadRequest, parse_close_code
from simulator.protocol import ABORT


@pytest.mark.parametrize("row", PROTOCOL_CLOSE_CODES, ids=lambda row: str(row.code))
def test_the_platform_classifies_every_protocol_code_as_the_simulator_means_it(row: CloseCode) -> None:
    reason = from_close_code(None if row.code == ABORT else row.code)
    assert reason is Reason(row.reason)
    assert kind_of(reason) is Kind(row.kind)


def test_the_table_has_one_row_per_code() -> None:
    codes = [row.code for row in PROTOCOL_CLOSE_CODES]
    assert len(codes) == len(set(codes))


def test_every_gateway_code_the_platform_names_is_in_the_simulators_table() -> None:
    named = {code for code in CLOSE_CODES if 4000 <= code <= 4999}
    assert named == set(GATEWAY_CLOSE_CODES.values())


@pytest.mark.parametrize("code", [4000, 4001, 4404, 4999])
def test_other_4xxx_codes_are_transient_on_the_platform(code: int) -> None:
    assert code not in {row.code for row in PROTOCOL_CLOSE_CODES}
    assert kind_of(from_close_code(code)) is Kind.TRANSIENT


@pytest.mark.parametrize("reason, code", sorted(GATEWAY_CLOSE_CODES.items()))
def test_the_control_api_takes_each_reason_name(reason: str, code: int) -> None:
    assert parse_close_code(reason, 1000) == code


def test_the_control_api_refuses_a_name_the_protocol_does_not_give() -> None:
    with pytest.raises(BadRequest, match="one of: bad_session, client_outdated, connection_closed"):
        parse_close_code("stopped", 1000)
