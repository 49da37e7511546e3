"""Personal data in text: e-mail addresses, phone numbers, card numbers, IBANs, IP addresses.

Patterns find candidates; card numbers must pass the Luhn check and carry a known issuer
prefix, IBANs the ISO 13616 mod-97 check with their country's length, IPv4 addresses must have
four octets of 0-255 (IPv6 is parsed by ``ipaddress``). Phone numbers need a phone-like layout
(a leading +, a bracketed area code, or separated digit groups) and 8 to 15 digits, and are not
dates, versions or card numbers. Reports show matches masked, never in full.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from whetstone.audit.schema import PIIMatch, PIISection

EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
    r"[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)
CARD = re.compile(r"(?<![\w.-])(?:\d[ -]?){12,18}\d(?![\w-]|\.\d)")
IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
IPV4 = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    r"(?![\w.]|\.\d)"
)
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,8}){1,4}"
    r"(?![\w-]|\.\d)"
    r"|(?<![\w+])\+\d{8,15}(?!\w)"
)
DATE_LIKE = re.compile(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$|^\d{1,2}[-./]\d{1,2}[-./]\d{2,4}$")

#: IBAN length per country (ISO 13616 registry, SWIFT release 2024).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip
PLACEHOLDER = {"email": "<EMAIL>", "phone": "<PHONE>", "card": "<CARD>", "iban": "<IBAN>",
               "ip": "<IP>"}  # fmt: skip


@dataclass(frozen=True)
class Match:
    """One personal data string found in a text."""

    kind: str
    start: int
    end: int
    value: str

    @property
    def masked(self) -> str:
        """The value with all but a few characters hidden."""
        return mask(self.kind, self.value)


def luhn_valid(number: str) -> bool:
    """The Luhn (mod 10) check of a string of digits (separators are ignored)."""
    digits = [int(c) for c in number if c.isdigit()]
    if len(digits) < 2:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_issuer(digits: str) -> str | None:
    """The card network a number's prefix and length belong to, or None."""
    n = len(digits)
    two, four, six = int(digits[:2]), int(digits[:4]), int(digits[:6])
    if digits[0] == "4" and n in (13, 16, 19):
        return "visa"
    if (51 <= two <= 55 or 2221 <= four <= 2720) and n == 16:
        return "mastercard"
    if two in (34, 37) and n == 15:
        return "amex"
    if (four == 6011 or two == 65 or 644 <= int(digits[:3]) <= 649) and n in (16, 19):
        return "discover"
    if 3528 <= four <= 3589 and 16 <= n <= 19:
        return "jcb"
    if (300 <= int(digits[:3]) <= 305 or two in (36, 38, 39)) and 14 <= n <= 19:
        return "diners"
    if 622126 <= six <= 622925 or (two == 62 and 16 <= n <= 19):
        return "unionpay"
    if digits[:2] in ("50", "56", "57", "58", "63", "67") and 12 <= n <= 19:
        return "maestro"
    return None


def is_card(candidate: str) -> bool:
    """A payment card number: 13-19 digits, a known issuer prefix and a valid Luhn digit."""
    digits = re.sub(r"[ -]", "", candidate)
    if not 13 <= len(digits) <= 19 or not digits.isdigit() or len(set(digits)) < 2:
        return False
    return card_issuer(digits) is not None and luhn_valid(digits)


def iban_valid(candidate: str) -> bool:
    """An IBAN: a known country, that country's length and the ISO 7064 mod-97 check."""
    iban = candidate.replace(" ", "").upper()
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum():
        return False
    moved = iban[4:] + iban[:4]
    number = "".join(str(int(c, 36)) for c in moved)
    return int(number) % 97 == 1


def _phone_ok(candidate: str) -> bool:
    digits = re.sub(r"\D", "", candidate)
    if not 8 <= len(digits) <= 15 or DATE_LIKE.match(candidate.strip()):
        return False
    if candidate.startswith("+") or "(" in candidate:
        return True
    groups = re.split(r"[ .-]", candidate)
    if len(groups[-1]) < 3 and not (len(groups) >= 5 and all(len(g) == 2 for g in groups[1:])):
        return False  # 10-18-19-22 or 2004 10 20 are not phones; 01 23 45 67 89 is one
    # at least three digit groups (555 123 4567) or two with a long last group (0171-5551234)
    return len(groups) >= 3 or (len(groups) == 2 and len(groups[-1]) >= 6)


def find_pii(text: str, kinds: Iterable[str] = PLACEHOLDER) -> list[Match]:
    """Personal data in ``text``, left to right, without overlaps (first kind listed wins)."""
    wanted = set(kinds)
    found: list[Match] = []
    for kind, matches in (
        ("email", _emails(text)),
        ("iban", _ibans(text)),
        ("card", _cards(text)),
        ("ip", _ips(text)),
        ("phone", _phones(text)),
    ):
        if kind not in wanted:
            continue
        for m in matches:
            if not any(m.start < f.end and f.start < m.end for f in found):
                found.append(m)
    return sorted(found, key=lambda m: m.start)


def _emails(text: str) -> Iterator[Match]:
    if "@" in text:
        for m in EMAIL.finditer(text):
            yield Match("email", m.start(), m.end(), m.group())


def _ibans(text: str) -> Iterator[Match]:
    for m in IBAN.finditer(text):
        if iban_valid(m.group()):
            yield Match("iban", m.start(), m.end(), m.group())


def _cards(text: str) -> Iterator[Match]:
    for m in CARD.finditer(text):
        value = m.group().strip(" -")
        if is_card(value):
            start = m.start() + m.group().index(value)
            yield Match("card", start, start + len(value), value)


def _ips(text: str) -> Iterator[Match]:
    for m in IPV4.finditer(text):
        yield Match("ip", m.start(), m.end(), m.group())
    if "::" in text or text.count(":") >= 5:
        for m in IPV6.finditer(text):
            try:
                ipaddress.IPv6Address(m.group())
            except ValueError:
                continue
            if sum(c.isalnum() for c in m.group()) >= 4:
                yield Match("ip", m.start(), m.end(), m.group())


def _phones(text: str) -> Iterator[Match]:
    for m in PHONE.finditer(text):
        value = m.group()
        if _phone_ok(value) and not is_card(value):
            yield Match("phone", m.start(), m.end(), value)


def mask(kind: str, value: str) -> str:
    """A masked form for reports: j***@example.com, +1 *** *** 0132, **** 1111, DE89 ****."""
    if kind == "email":
        user, _, domain = value.partition("@")
        return f"{user[:1]}***@{domain}"
    if kind in ("card", "phone"):
        digits = re.sub(r"\D", "", value)
        return f"{'+' if value.startswith('+') else ''}***{digits[-4:]}"
    if kind == "iban":
        return value.replace(" ", "")[:4] + "****"
    if kind == "ip":
        parts = value.split(".")
        return ".".join(parts[:1] + ["*"] * (len(parts) - 1)) if len(parts) == 4 else "****"
    return "****"


def redact(text: str, matches: Iterable[Match]) -> str:
    """``text`` with every match replaced by its placeholder (<EMAIL>, <PHONE>, ...)."""
    out, last = [], 0
    for m in sorted(matches, key=lambda m: m.start):
        out.append(text[last : m.start])
        out.append(PLACEHOLDER[m.kind])
        last = m.end
    out.append(text[last:])
    return "".join(out)


class PIIScanner:
    """Streaming scan of records for personal data."""

    def __init__(self, kinds: Iterable[str]) -> None:
        self.kinds = list(kinds)
        self.matches: list[tuple[str, Match]] = []

    def add(self, records: Iterable[Any]) -> None:
        """Scan a chunk of records (anything with ``id`` and ``text``)."""
        for rec in records:
            self.matches.extend((rec.id, m) for m in find_pii(rec.text, self.kinds))

    def section(self) -> PIISection:
        """Counts per kind and every match, masked."""
        counts = {kind: 0 for kind in self.kinds}
        for _rid, m in self.matches:
            counts[m.kind] += 1
        return PIISection(
            counts=counts,
            n_records=len({rid for rid, _m in self.matches}),
            matches=[
                PIIMatch(id=rid, kind=m.kind, masked=m.masked, start=m.start, end=m.end)
                for rid, m in self.matches
            ],
        )
