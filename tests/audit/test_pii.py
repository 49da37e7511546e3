"""PII detection: Luhn and IBAN checks against published valid/invalid numbers, patterns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from whetstone.audit.pii import find_pii, iban_valid, is_card, luhn_valid, mask, redact

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "whetstone" / "data" / "examples"

# Card numbers published by payment processors for testing (Stripe, PayPal, Adyen docs).
VALID_CARDS = [
    "4111111111111111",  # Visa
    "4012888888881881",  # Visa
    "4242424242424242",  # Visa
    "5555555555554444",  # Mastercard
    "5105105105105100",  # Mastercard
    "2223003122003222",  # Mastercard 2-series
    "378282246310005",  # American Express
    "371449635398431",  # American Express
    "6011111111111117",  # Discover
    "6011000990139424",  # Discover
    "3530111333300000",  # JCB
    "30569309025904",  # Diners Club
]
# IBANs from the ISO 13616 registry / national bank examples.
VALID_IBANS = [
    "GB82WEST12345698765432",
    "GB82 WEST 1234 5698 7654 32",
    "DE89370400440532013000",
    "FR1420041010050500013M02606",
    "NL91ABNA0417164300",
    "BE68539007547034",
    "CH9300762011623852957",
    "ES9121000418450200051332",
    "IT60X0542811101000000123456",
    "NO9386011117947",
]


def luhn_reference(number: str) -> bool:
    """The Luhn check written from its definition, independently of the module."""
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        total += (d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 else d
    return total % 10 == 0


@pytest.mark.parametrize("number", VALID_CARDS)
def test_valid_test_cards_pass_luhn_and_are_found(number: str) -> None:
    assert luhn_valid(number) and luhn_reference(number)
    assert is_card(number)
    grouped = " ".join(number[i : i + 4] for i in range(0, len(number), 4))
    found = find_pii(f"my card is {grouped}, expires soon")
    assert [m.kind for m in found] == ["card"]
    assert found[0].value.replace(" ", "") == number


@pytest.mark.parametrize("number", VALID_CARDS)
def test_one_changed_digit_fails_luhn(number: str) -> None:
    last = int(number[-1])
    for wrong in {(last + 1) % 10, (last + 5) % 10}:
        bad = number[:-1] + str(wrong)
        assert not luhn_valid(bad)
        assert luhn_reference(bad) == luhn_valid(bad)
        assert not is_card(bad)
        assert find_pii(f"card {bad}") == []


def test_luhn_agrees_with_reference_on_many_numbers() -> None:
    import random

    rng = random.Random(0)
    for _ in range(2000):
        number = "".join(rng.choice("0123456789") for _ in range(rng.randint(12, 19)))
        assert luhn_valid(number) == luhn_reference(number)


@pytest.mark.parametrize("iban", VALID_IBANS)
def test_valid_ibans_pass_mod97_and_are_found(iban: str) -> None:
    assert iban_valid(iban)
    compact = iban.replace(" ", "")
    # mod-97 from the ISO 7064 definition, written independently
    moved = compact[4:] + compact[:4]
    digits = "".join(str(ord(c) - 55) if c.isalpha() else c for c in moved)
    assert int(digits) % 97 == 1
    found = find_pii(f"please wire it to {iban} today")
    assert [m.kind for m in found] == ["iban"]


@pytest.mark.parametrize("iban", VALID_IBANS)
def test_changed_check_digits_or_length_fail(iban: str) -> None:
    compact = iban.replace(" ", "")
    check = int(compact[2:4])
    bad = compact[:2] + f"{(check + 1) % 100:02d}" + compact[4:]
    assert not iban_valid(bad)
    assert not iban_valid(compact + "0")  # wrong length for the country
    assert find_pii(f"IBAN {bad}") == []


def test_emails_ips_and_phones() -> None:
    text = (
        "Write to jane.doe+billing@example.co.uk or call +1 415-555-0132 or (030) 1234 5678; "
        "the server is 192.168.10.27 and the IPv6 host 2001:db8::8a2e:370:7334."
    )
    kinds = [(m.kind, m.value) for m in find_pii(text)]
    assert kinds == [
        ("email", "jane.doe+billing@example.co.uk"),
        ("phone", "+1 415-555-0132"),
        ("phone", "(030) 1234 5678"),
        ("ip", "192.168.10.27"),
        ("ip", "2001:db8::8a2e:370:7334"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "Ubuntu 24.04 with version 5.2.1 and build 1.2.3.4.5",
        "the score was 10-18-19-22 and the final 2004 10 20",
        "on 2004-08-15 the price rose to 1,234,567 dollars",
        "error code 0x80070005 at 12:30:45",
        "an address like 999.1.1.1 or 1.2.3 is not an IP",
        "please reissue invoice INV-20931 with our new VAT number DE813456789",
        "order 4111111111111112 (not a card: bad check digit)",
    ],
)
def test_no_false_positives(text: str) -> None:
    assert find_pii(text) == []


def test_shipped_eval_intents_have_no_pii() -> None:
    lines = (EXAMPLES / "support_intents.jsonl").read_text(encoding="utf-8").splitlines()
    assert all(find_pii(json.loads(line)["text"]) == [] for line in lines)


def test_mask_and_redact() -> None:
    text = "mail a.b@example.com, card 4111 1111 1111 1111, ip 10.0.0.1"
    found = find_pii(text)
    assert [mask(m.kind, m.value) for m in found] == ["a***@example.com", "***1111", "10.*.*.*"]
    assert redact(text, found) == "mail <EMAIL>, card <CARD>, ip <IP>"
    assert all("4111" not in m.masked[:4] for m in found)
