"""A whole new address in one message is read as a whole (intents.address), never as parts of the old one."""

from __future__ import annotations

import pytest

from intents.address import extract_new_address, parse_whole_address
from intents.types import Context


@pytest.mark.parametrize(("text", "expected"), [
    ("send it to my mom's place instead - 45 Park Street, Kolkata 700016",
     {"line1": "45 Park Street", "line2": "", "city": "Kolkata", "postal_code": "700016"}),
    ("deliver to flat 12, Prestige Towers, MG Road, Bengaluru 560001",
     {"line1": "flat 12", "line2": "Prestige Towers, MG Road", "city": "Bengaluru", "postal_code": "560001"}),
    ("please deliver to my office, 3rd floor, 80 Residency Road, Bengaluru 560025",
     {"line1": "3rd floor", "line2": "80 Residency Road", "city": "Bengaluru", "postal_code": "560025"}),
    ("naya address: H.No 34, Sector 15, Gurgaon, 122001",
     {"line1": "H.No 34", "line2": "Sector 15", "city": "Gurgaon", "postal_code": "122001"}),
    # Spanish: the postal code before the city; the customer's words kept as written.
    ("envíalo a Calle Alcalá 120, planta 3, puerta izquierda, 28009 Madrid",
     {"line1": "Calle Alcalá 120", "line2": "planta 3, puerta izquierda", "city": "Madrid", "postal_code": "28009"}),
    # US: the state stays with the city.
    ("new address: 123 Main St, Springfield, IL 62704",
     {"line1": "123 Main St", "line2": "", "city": "Springfield, IL", "postal_code": "62704"}),
])
def test_a_complete_address_is_read_whole(text: str, expected: dict[str, str]) -> None:
    assert parse_whole_address(text) == expected
    assert [e.type for e in extract_new_address(text, Context())] == ["new_address"]


@pytest.mark.parametrize("text", [
    "change address to my office, Koramangala 560034",  # no house number: a person checks it
    "please send to 221B Baker Street London",  # no postal code
    "send it to my office at 5th block instead",
])
def test_a_new_address_that_cannot_be_read_whole_is_unsure(text: str) -> None:
    assert parse_whole_address(text) is None
    assert [e.type for e in extract_new_address(text, Context())] == ["new_address_unsure"]


@pytest.mark.parametrize("text", [
    "my pin code is 560001", "the flat number is 4B", "order 560034 where is it", "it's on the 3rd floor",
    "call me on 9812345678", "deliver on 28/11",
])
def test_parts_and_other_numbers_are_not_a_new_address(text: str) -> None:
    assert extract_new_address(text, Context()) == []
