"""PII and secrets in training text. Tight patterns, then a validator per type (Luhn + issuer prefix,
IBAN mod 97, SSA/HMRC allocation rules, GitHub's CRC32, JWT header decoding, real calendar dates);
phone numbers are parsed and validated by libphonenumber (`phonenumbers`). Presidio was tried and not
used: see docs/decisions.md ("Screening").

The excerpt in a finding is masked: a report must not become a second copy of the secret."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from types import ModuleType

from tunesafe.errors import UserError
from tunesafe.screening.base import Batch, ExampleScreener, register_screener
from tunesafe.screening.checksums import card_issuer, github_token_ok, iban_ok, luhn_ok, uk_nino_ok, us_ssn_ok
from tunesafe.screening.records import Example, Finding, Severity, find_span

Validator = Callable[[re.Match[str]], bool]


@dataclass(frozen=True)
class Pattern:
    type: str
    severity: Severity
    regex: re.Pattern[str]
    valid: Validator | None = None
    # The regex may run on into the next word (an IBAN into its BIC, a card number into its CVV): when the
    # whole run fails its check, its longest valid prefix ending before a space is the item.
    trim: bool = False


def _digits(m: re.Match[str]) -> str:
    return re.sub(r"\D", "", m.group(0))


def _card(m: re.Match[str]) -> bool:
    d = _digits(m)
    return 13 <= len(d) <= 19 and card_issuer(d) is not None and luhn_ok(d)


def _iban(m: re.Match[str]) -> bool:
    return iban_ok(m.group(0).replace(" ", "").upper())


def _email(m: re.Match[str]) -> bool:
    domain = m.group(1).lower()
    # RFC 2606 / 6761 names are reserved for documentation: an address there belongs to nobody.
    return not (
        domain.split(".")[-1] in ("test", "example", "invalid", "localhost")
        or re.search(r"(^|\.)example\.(com|org|net)$", domain)
    )


def _jwt(m: re.Match[str]) -> bool:
    head = m.group(1)
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (binascii.Error, ValueError):
        return False
    return isinstance(header, dict) and "alg" in header


_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}


def _dob(m: re.Match[str]) -> bool:
    g = m.groupdict()
    if g["iso_y"]:
        y, mo, d = int(g["iso_y"]), int(g["iso_m"]), int(g["iso_d"])
    elif g["num_y"]:
        a, b, y = int(g["num_a"]), int(g["num_b"]), int(g["num_y"])
        mo, d = (a, b) if a <= 12 else (b, a)  # US order unless the first number cannot be a month
    else:
        y, d = int(g["txt_y"]), int(g["txt_d1"] or g["txt_d2"])
        mo = _MONTHS[g["txt_m"][:3].lower()]
    try:
        born = date(y, mo, d)
    except ValueError:
        return False
    return date(1900, 1, 1) <= born <= date.today()


_MONTH_RX = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|jun(?:e)?|jul(?:y)?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_DATE_RX = (
    rf"(?:(?P<iso_y>\d{{4}})-(?P<iso_m>\d{{1,2}})-(?P<iso_d>\d{{1,2}})"
    rf"|(?P<num_a>\d{{1,2}})[/.](?P<num_b>\d{{1,2}})[/.](?P<num_y>\d{{4}})"
    rf"|(?P<txt_d1>\d{{1,2}})?(?:st|nd|rd|th)?\s*(?P<txt_m>{_MONTH_RX})\.?\s*(?P<txt_d2>\d{{1,2}})?"
    rf"(?:st|nd|rd|th)?,?\s+(?P<txt_y>\d{{4}}))"
)
_STREET = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Circle)"
)
_US_STATES = [
    "AL",
    "AK",
    "AZ",
    "AR",
    "CA",
    "CO",
    "CT",
    "DE",
    "DC",
    "FL",
    "GA",
    "HI",
    "ID",
    "IL",
    "IN",
    "IA",
    "KS",
    "KY",
    "LA",
    "ME",
    "MD",
    "MA",
    "MI",
    "MN",
    "MS",
    "MO",
    "MT",
    "NE",
    "NV",
    "NH",
    "NJ",
    "NM",
    "NY",
    "NC",
    "ND",
    "OH",
    "OK",
    "OR",
    "PA",
    "RI",
    "SC",
    "SD",
    "TN",
    "TX",
    "UT",
    "VT",
    "VA",
    "WA",
    "WV",
    "WI",
    "WY",
]
_UK_POSTCODE = r"[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}"

PATTERNS: tuple[Pattern, ...] = (
    Pattern(
        "pii.private_key",
        "high",
        re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----"),
    ),
    Pattern("pii.secret", "high", re.compile(r"\b(?:AKIA|ASIA)[A-Z2-7]{16}\b(?<!EXAMPLE)")),
    Pattern(
        "pii.secret",
        "high",
        re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36}\b"),
        lambda m: github_token_ok(m.group(0)),
    ),
    Pattern("pii.secret", "high", re.compile(r"\bgithub_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}\b")),
    Pattern(
        "pii.secret",
        "high",
        re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}T3BlbkFJ[A-Za-z0-9_-]{20,}"),
    ),
    Pattern("pii.secret", "high", re.compile(r"\bsk-ant-(?:api|admin)\d{2}-[A-Za-z0-9_-]{80,}")),  # Anthropic
    Pattern("pii.secret", "high", re.compile(r"\b(?:sk|rk)_live_[A-Za-z0-9]{24,99}\b")),
    Pattern("pii.secret", "high", re.compile(r"\bxox[abposr]-\d{6,}-[A-Za-z0-9-]{10,}\b")),
    Pattern("pii.secret", "high", re.compile(r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])")),
    Pattern("pii.secret", "high", re.compile(r"\bhf_[A-Za-z]{34}\b")),
    Pattern("pii.secret", "high", re.compile(r"\bglpat-[A-Za-z0-9_-]{20}(?![A-Za-z0-9_-])")),  # GitLab
    Pattern(
        "pii.secret",
        "high",
        re.compile(r"\b(eyJ[A-Za-z0-9_-]{8,})\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}"),
        _jwt,
    ),
    Pattern(
        "pii.credit_card", "high", re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])"), _card, trim=True
    ),
    # IBANs are case-insensitive (ISO 13616) and people type them in lower case; the check upper-cases
    Pattern(
        "pii.iban", "high", re.compile(r"\b[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}\b"), _iban, trim=True
    ),
    Pattern(
        "pii.national_id",
        "high",
        re.compile(r"(?<![\d-])(\d{3})[- ](\d{2})[- ](\d{4})(?![\d-])"),
        lambda m: us_ssn_ok(m.group(1), m.group(2), m.group(3)),
    ),
    Pattern(
        "pii.national_id",
        "high",
        re.compile(r"\b([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]) ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"),
        lambda m: uk_nino_ok(m.group(1)),
    ),
    Pattern(
        "pii.email",
        "medium",
        re.compile(r"\b[A-Za-z0-9._%+-]+@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})\b"),
        _email,
    ),
    Pattern(
        "pii.date_of_birth",
        "medium",
        re.compile(
            rf"\b(?:date of birth|DOB|D\.O\.B\.|born(?: on)?|birth ?date|birthday)\s*(?:is|was|:|"
            rf"-)?\s*{_DATE_RX}",
            re.IGNORECASE,
        ),
        _dob,
    ),
    Pattern(
        "pii.address",
        "medium",
        re.compile(
            rf"\b\d{{1,6}}(?: [A-Z][a-z]+){{1,4}} {_STREET}\.?(?:,? (?:Apt|Suite|Unit|#) ?[\w-]+)?,"
            rf" [A-Z][a-z]+(?: [A-Z][a-z]+)*,? (?:(?:{'|'.join(_US_STATES)}) "
            rf"\d{{5}}(?:-\d{{4}})?|{_UK_POSTCODE})\b"
        ),
    ),
    Pattern(
        "pii.address",
        "medium",
        re.compile(
            r"\b[A-ZÄÖÜ][a-zäöüß]+(?:straße|strasse|weg|platz|allee|gasse) \d{1,4}[a-z]?, \d{5} "
            r"[A-ZÄÖÜ][a-zäöüß]+"
        ),
    ),
)

_PHONE_HINT = re.compile(r"(?:\d[\s().-]{0,3}){7,}")
_PHONE_REGIONS = ("US", "GB", "DE", "FR")


def _phonenumbers() -> ModuleType:
    """Imported on first use: `tunesafe judge` imports this package on a core install, without the
    screen extra that brings phonenumbers."""
    try:
        import phonenumbers
    except ImportError:
        raise UserError("PII screening needs phonenumbers", fix="pip install 'tunesafe[screen]'") from None
    return phonenumbers


def _phones(text: str) -> Iterator[tuple[int, int]]:
    """Valid numbers only (libphonenumber's VALID leniency checks number plans, not just shapes);
    international numbers need their +prefix, national ones are tried in a few common regions."""
    if not _PHONE_HINT.search(text):
        return
    phonenumbers = _phonenumbers()
    seen: set[int] = set()
    for region in _PHONE_REGIONS:
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
            if (
                match.start not in seen
                and not _inside_digit_run(text, match.start, match.end)
                and not _joined_to_identifier_or_time(text, match.start, match.end)
            ):
                seen.add(match.start)
                yield match.start, match.end
        if seen:
            return


def _inside_digit_run(text: str, start: int, end: int) -> bool:
    """A "number" that is, or is cut out of, a longer digit group (an order reference, a failed card
    number) is not a phone."""
    digits = sum(ch.isdigit() for ch in text[start:end])
    # E.164 caps numbers at 15 digits; written without +, national numbers stay within 12.
    if digits > (15 if text[start] == "+" else 12):
        return True
    return bool(
        re.search(r"\d[ -]?$", text[max(0, start - 2) : start]) or re.match(r"[ -]?\d", text[end : end + 2])
    )


def _joined_to_identifier_or_time(text: str, start: int, end: int) -> bool:
    """Digits hyphenated or underscored onto a word ("ORD-2024-000123", "order_4155552671", "4155552671-B")
    are a reference, and digits running into ":30" are a date and time ("2024.01.15 10:30:00"):
    libphonenumber rejects a letter touching the number, not these joins."""
    return bool(
        re.search(r"(?:\w[-_]|[_#])$", text[max(0, start - 2) : start])
        or re.match(r"[-_]\w|:\d", text[end : end + 2])
    )


def mask(text: str) -> str:
    return f"{text[:4]}…[{len(text)} chars]" if len(text) > 6 else "…"


def redact(text: str) -> str:
    """`text` with every PII item masked, for excerpts that other findings quote from the same turn."""
    out, last = [], 0
    for _kind, _severity, start, end in sorted(scan_text(text), key=lambda hit: hit[2]):
        out += [text[last:start], mask(text[start:end])]
        last = end
    return "".join(out) + text[last:] if out else text


def scan_text(text: str) -> Iterator[tuple[str, Severity, int, int]]:
    """(type, severity, start, end) of every validated PII item; overlapping hits keep the first type
    (patterns are ordered most specific first, so a card number is not also a phone number)."""
    taken: list[tuple[int, int]] = []
    for p in PATTERNS:
        pos = 0
        while (m := p.regex.search(text, pos)) is not None:
            found = _validated(p, m)
            # after a trimmed item the rest of the run is searched again: it may hold the next one
            pos = m.end() if found is None else found.end()
            if found is not None and not _overlaps(taken, found.start(), found.end()):
                taken.append((found.start(), found.end()))
                yield p.type, p.severity, found.start(), found.end()
    for start, end in _phones(text):
        if not _overlaps(taken, start, end):
            yield "pii.phone", "medium", start, end


def _validated(p: Pattern, m: re.Match[str]) -> re.Match[str] | None:
    if p.valid is None or p.valid(m):
        return m
    if not p.trim:
        return None
    for cut in range(m.end() - 1, m.start(), -1):
        if not m.string[cut].isspace():
            continue
        shorter = p.regex.fullmatch(m.string, m.start(), cut)
        if shorter is not None and p.valid(shorter):
            return shorter
    return None


def _overlaps(taken: list[tuple[int, int]], start: int, end: int) -> bool:
    return any(start < e and s < end for s, e in taken)


class PIIScreener(ExampleScreener):
    name = "pii"
    version = "4"  # 3: lower-case IBANs, Anthropic keys; 4: GitLab personal access tokens

    def screen(self, batch: Batch) -> list[Finding]:
        return [f for ex in batch.examples for f in self._example(ex)]

    def _example(self, ex: Example) -> Iterator[Finding]:
        for i, msg in enumerate(ex.messages):
            for kind, severity, start, end in scan_text(msg.content):
                span = find_span(ex, msg.role, start, end, message=i)
                masked = type(span)(span.role, span.message, span.start, span.end, mask(span.text))
                yield Finding(
                    kind,
                    severity,
                    self.name,
                    ex.index,
                    ex.line,
                    f"{kind.split('.', 1)[1].replace('_', ' ')} in the {msg.role} message",
                    masked,
                )


@register_screener("pii")
def _pii(_options: object) -> PIIScreener:
    return PIIScreener()
