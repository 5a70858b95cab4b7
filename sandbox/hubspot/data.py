"""Deterministic record generation: a record is a pure function of (portal seed, object type, index).

Nothing generated is stored, so a 1,000,000-contact portal costs no storage and no seeding time. Speed comes from
precomputed "template rows": for each (portal, type) we build TEMPLATE_ROWS rows of property values once; record i
takes row `mix(i) % TEMPLATE_ROWS` and only its id, timestamps and e-mail are computed per record.

Ids and timestamps are monotonic functions of the index, so list paging (`after` = next id) and search filters on
`hs_object_id`, `createdate` and the last-modified property become index ranges (binary search) instead of scans.
"""

from __future__ import annotations

import bisect
import json
import random
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .schema import OBJECT_TYPES, ObjectType, Prop

TEMPLATE_ROWS = 1024
MAX_SIZE = 10_000_000

# (first index, first id, id step): ids grow with the index but in segments of different lengths, so ids are
# numeric strings of 1 to 11 digits and any text comparison of ids ("9" > "10") goes wrong quickly.
ID_SEGMENTS: tuple[tuple[int, int, int], ...] = (
    (0, 1, 1),
    (10, 101, 3),
    (40, 1001, 7),
    (100, 20_001, 11),
    (200, 1_000_001, 13),
    (10_000, 50_000_001, 17),
    (200_000, 10_000_000_001, 101),
)
_SEG_START_IDX = [s[0] for s in ID_SEGMENTS]
_SEG_START_ID = [s[1] for s in ID_SEGMENTS]
# Records created through mutations get ids above every generated id.
CREATED_ID_BASE = 90_000_000_000

YEAR_MS = 365 * 24 * 3600 * 1000
SPAN_MS = 3 * YEAR_MS  # generated records were created over the 3 years before generated_at
CREATE_SPAN_MS = SPAN_MS * 5 // 6
MODIFY_OFFSET_MS = SPAN_MS // 6


def id_for_index(i: int) -> int:
    seg = bisect.bisect_right(_SEG_START_IDX, i) - 1
    start_idx, start_id, step = ID_SEGMENTS[seg]
    return start_id + (i - start_idx) * step


def index_for_id(object_id: int) -> int | None:
    """The index whose id is exactly object_id, or None (range checks against the size are the caller's)."""
    if object_id < 1:
        return None
    seg = bisect.bisect_right(_SEG_START_ID, object_id) - 1
    start_idx, start_id, step = ID_SEGMENTS[seg]
    offset, rem = divmod(object_id - start_id, step)
    if rem:
        return None
    i = start_idx + offset
    if seg + 1 < len(ID_SEGMENTS) and i >= ID_SEGMENTS[seg + 1][0]:
        return None
    return i


def first_index_with_id_at_least(object_id: int) -> int:
    lo, hi = 0, MAX_SIZE
    while lo < hi:
        mid = (lo + hi) // 2
        if id_for_index(mid) >= object_id:
            hi = mid
        else:
            lo = mid + 1
    return lo


def lower_bound(fn: Callable[[int], int], n: int, value: int) -> int:
    """First index i in [0, n) with fn(i) >= value (fn non-decreasing), else n."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if fn(mid) >= value:
            hi = mid
        else:
            lo = mid + 1
    return lo


def iso(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def iso_date(ms: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ms // 1000))


def now_ms() -> int:
    return int(time.time() * 1000)


def parse_time_ms(value: Any) -> int | None:
    """Epoch milliseconds from a filter value or a stored value: digits, ISO datetime or ISO date."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


# --- word lists (non-ASCII on purpose) ---------------------------------------------------------------------
FIRST = [
    "Anna",
    "Ben",
    "Chloé",
    "Dmitri",
    "Émile",
    "Fatima",
    "Günter",
    "Hiroshi",
    "Ingrid",
    "José",
    "Kasia",
    "Łukasz",
    "Mårten",
    "Nuño",
    "Olga",
    "Priya",
    "Quentin",
    "Renée",
    "Søren",
    "Tomás",
    "Ursula",
    "Václav",
    "Wei",
    "Xochitl",
    "Yūki",
    "Zoë",
    "Ольга",
    "李娜",
    "Mohammed",
    "Aoife",
    "Björn",
    "Çağla",
    "Dörte",
    "Ēriks",
    "John",
    "Mary",
    "Robert",
    "Linda",
    "Michael",
    "Sarah",
    "David",
    "Laura",
    "James",
    "Emma",
]
LAST = [
    "Smith",
    "Müller",
    "García",
    "Nguyen",
    "Øvergaard",
    "Kowalski",
    "Dubois",
    "Rossi",
    "Yamamoto",
    "Núñez",
    "Schröder",
    "van der Berg",
    "O'Connor",
    "Иванова",
    "张",
    "Smith-Jones",
    "Ångström",
    "Żółć",
    "Jensen",
    "Brown",
    "Johnson",
    "Williams",
    "Martin",
    "Bernard",
    "Lefèvre",
    "Fischer",
    "Weiß",
    "Kim",
    "Patel",
    "Silva",
]
COMPANY_WORDS = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Hooli",
    "Vandelay",
    "Soylent",
    "Müller & Söhne",
    "Café Lumière",
    "Nordlicht",
    "Tōkyō Trading",
    "Škoda Partners",
    "Zeta",
    "Blue Fjord",
    "Orbital",
    "Pied Piper",
    "Bluth",
    "Cyberdyne",
]
COMPANY_SUFFIX = ["Inc.", "GmbH", "Ltd", "S.A.", "AG", "LLC", "K.K.", "SARL", "B.V.", "Co."]
CITIES = [
    ("Berlin", "Berlin", "DE", "10115"),
    ("München", "Bayern", "DE", "80331"),
    ("Zürich", "ZH", "CH", "8001"),
    ("São Paulo", "SP", "BR", "01000-000"),
    ("Kraków", "Małopolskie", "PL", "30-001"),
    ("東京", "東京都", "JP", "100-0001"),
    ("Boston", "MA", "US", "02108"),
    ("New York", "NY", "US", "10001"),
    ("Austin", "TX", "US", "73301"),
    ("Paris", "Île-de-France", "FR", "75001"),
    ("Dublin", "", "IE", "D02"),
    ("Reykjavík", "", "IS", "101"),
    ("Montréal", "QC", "CA", "H2X"),
    ("London", "", "GB", "EC1A 1BB"),
]
STREETS = [
    "Hauptstraße",
    "Main St",
    "Rue de Rivoli",
    "Avenida Paulista",
    "Bahnhofstraße",
    "Elm Street",
    "Ulica Floriańska",
    "Königsallee",
    "Baker Street",
    "Calle Mayor",
]
TITLES = [
    "CEO",
    "CTO",
    "Head of Marketing",
    "Marketing Ops Manager",
    "Data Engineer",
    "Sales Director",
    "Geschäftsführerin",
    "Responsable marketing",
    "VP Sales",
    "Account Executive",
    "Analyst",
    "",
]
WORDS = [
    "sync",
    "profile",
    "pipeline",
    "segment",
    "customer",
    "renewal",
    "invoice",
    "Überweisung",
    "réunion",
    "integration",
    "quarterly",
    "forecast",
    "onboarding",
    "délai",
    "Kündigung",
    "support",
    "migration",
    "API",
    "dashboard",
    "export",
    "import",
    "naïve",
    "coöperation",
    "façade",
    "jalapeño",
]
SENTENCES = [
    "Customer asked about the renewal terms for next year.",
    "Kunde möchte die Rechnung per E-Mail erhalten — bitte prüfen.",
    "Le client a signalé un problème de synchronisation à 9h.",
    'Follow up after the QBR; they want "more reports" & <b>fewer</b> e-mails.',
    "El cliente necesita una demostración el próximo martes.",
    "次回のミーティングは来週です。",
    "Needs SSO + SCIM before signing 🚀",
    "Line one.\nLine two after a newline.\tTabbed.",
    "Escalated to tier 2: data import stuck at 99%.",
    "Price sensitivity: asked for 15% discount (approved up to 10%).",
]
EMAIL_DOMAINS = ["example.com", "example.org", "mail.test", "beispiel.de", "exemple.fr", "empresa.test"]


def ascii_slug(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return "".join(ch for ch in plain if ch.isalnum())


# --- value generators ----------------------------------------------------------------------------------------
def _long_text(rng: random.Random) -> str:
    # Mostly short, sometimes very long (several KB), to exercise message-size limits downstream.
    roll = rng.random()
    count = 120 if roll < 0.02 else 25 if roll < 0.08 else rng.choice([1, 1, 2, 3, 4])
    return " ".join(rng.choice(SENTENCES) for _ in range(count))


def _phone(rng: random.Random) -> str:
    fmt = rng.randrange(4)
    if fmt == 0:
        return f"+1 ({rng.randrange(200, 999)}) {rng.randrange(200, 999)}-{rng.randrange(1000, 9999)}"
    if fmt == 1:
        return f"+49 30 {rng.randrange(1000000, 9999999)}"
    if fmt == 2:
        return f"{rng.randrange(200, 999)}.{rng.randrange(200, 999)}.{rng.randrange(1000, 9999)}"
    return f"+33 6 {rng.randrange(10, 99)} {rng.randrange(10, 99)} {rng.randrange(10, 99)} {rng.randrange(10, 99)}"


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


@dataclass
class GenContext:
    rng: random.Random
    first: str
    last: str
    company: str
    city: tuple[str, str, str, str]
    owners: list[str]
    generated_at_ms: int


def gen_value(name: str, prop: Prop, ctx: GenContext) -> str | None:
    rng = ctx.rng
    g = prop.gen
    if g == "firstname":
        return ctx.first
    if g == "lastname":
        return ctx.last
    if g == "salutation":
        return rng.choice(["Mr.", "Ms.", "Dr.", "Frau", "Herr", "Mme"])
    if g == "phone":
        return _phone(rng)
    if g == "company_name":
        return ctx.company
    if g in ("company_domain",):
        return ascii_slug(ctx.company.split(" ")[0]) + rng.choice([".com", ".de", ".io", ".co.jp", ".fr"])
    if g == "website":
        return "https://www." + ascii_slug(ctx.company.split(" ")[0]) + ".example"
    if g == "jobtitle":
        return rng.choice(TITLES) or None
    if g in ("address",):
        return f"{rng.choice(STREETS)} {rng.randrange(1, 250)}"
    if g == "address2":
        return rng.choice(["Suite 100", "2. OG", "Bâtiment B", "Floor 7"])
    if g == "city":
        return ctx.city[0]
    if g == "state":
        return ctx.city[1] or None
    if g == "country":
        return ctx.city[2]
    if g == "zip":
        return ctx.city[3]
    if g == "industry_text":
        return rng.choice(["Software", "Fintech", "Einzelhandel", "Santé", "Manufacturing"])
    if g == "long_text":
        return _long_text(rng)
    if g == "sentence":
        return rng.choice(SENTENCES)
    if g == "option":
        return rng.choice(prop.options)[1]
    if g == "pipeline":
        return prop.options[0][1] if rng.random() < 0.8 else prop.options[1][1]
    if g == "multi":
        picks = rng.sample(prop.options, rng.randrange(1, min(4, len(prop.options)) + 1))
        return ";".join(v for _, v in picks)
    if g == "owner":
        return rng.choice(ctx.owners)
    if g == "bool":
        return "true" if rng.random() < 0.5 else "false"
    if g == "count":
        return str(rng.randrange(0, 5000))
    if g == "small":
        return str(rng.randrange(0, 12))
    if g == "money":
        return _number_text(rng.choice([rng.randrange(100, 100000), round(rng.uniform(10, 250000), 2)]))
    if g == "probability":
        return _number_text(rng.choice([0, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 1]))
    if g == "nps":
        return str(rng.randrange(-100, 101) if prop.name == "health_score" else rng.randrange(0, 11))
    if g == "severity":
        return str(rng.randrange(1, 5))
    if g == "ref_id":
        return str(rng.choice([rng.randrange(1, 100), rng.randrange(1000, 70000), rng.randrange(10**9, 10**10)]))
    if g == "datetime":
        return iso(ctx.generated_at_ms - rng.randrange(0, SPAN_MS))
    if g == "date":
        return iso_date(ctx.generated_at_ms - rng.randrange(-YEAR_MS, SPAN_MS))
    if g == "birth_date":
        return iso_date(rng.randrange(-20 * YEAR_MS, 30 * YEAR_MS))  # 1950..2000, negative epochs included
    if g == "year":
        return str(rng.randrange(1890, 2024))
    if g == "handle":
        return "@" + ascii_slug(ctx.first + ctx.last)[:15]
    if g == "linkedin":
        return "https://www.linkedin.com/company/" + ascii_slug(ctx.company)
    if g == "tz_text":
        return rng.choice(["Europe/Berlin", "America/New_York", "Asia/Tokyo"])
    if g == "code":
        return "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(8))
    if g == "version":
        return f"{rng.randrange(1, 5)}.{rng.randrange(0, 20)}.{rng.randrange(0, 10)}"
    if g == "secondary_email":
        return f"{ascii_slug(ctx.first) or 'user'}@{rng.choice(EMAIL_DOMAINS)}"
    if g == "email_domain":
        return rng.choice(EMAIL_DOMAINS)
    if g == "deal_name":
        return f"{ctx.company} — {rng.choice(['Renewal', 'New business', 'Upsell', 'Pilot', 'Erweiterung'])}"
    if g == "ticket_subject":
        return (
            rng.choice(
                [
                    "Sync failing",
                    "Cannot log in",
                    "Rechnung falsch",
                    "Export vide",
                    "Feature request",
                    "API 429 errors",
                    "データが表示されない",
                ]
            )
            + f" #{rng.randrange(100, 99999)}"
        )
    if g == "object_source":
        return rng.choice(["CRM_UI", "EMAIL", "FORM", "API", "IMPORT"])
    if g == "empty":
        return None
    return " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 4)))


def owners_for(hub_id: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(f"owners:{hub_id}:{seed}")
    owners = []
    for k in range(12):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        owner_id = 10_000_000 + hub_id * 97 + k * 7919
        owners.append(
            {
                "id": str(owner_id),
                "email": f"{ascii_slug(first) or 'owner'}.{ascii_slug(last) or k}@owners.example",
                "firstName": first,
                "lastName": last,
                "userId": 5_000_000 + k * 31 + hub_id % 1000,
                "userIdIncludingInactive": 5_000_000 + k * 31 + hub_id % 1000,
                "type": "QUEUE" if k == 11 else "PERSON",
                "teams": [
                    {"id": str(300 + k % 3), "name": ["Sales EMEA", "Sales NA", "Support"][k % 3], "primary": True}
                ],
                "createdAt": iso(DEFAULT_OWNER_MS + k * 86_400_000),
                "updatedAt": iso(DEFAULT_OWNER_MS + (k + 30) * 86_400_000),
                "archived": k == 10,  # one archived owner: shown only with archived=true
            }
        )
    return owners


DEFAULT_OWNER_MS = 1609459200000  # 2021-01-01


@dataclass
class PropInfo:
    """A property as served: built-in (with generator) or added later (no generated values)."""

    name: str
    label: str
    type: str
    field_type: str
    group: str
    options: tuple[tuple[str, str], ...]
    hubspot_defined: bool
    calculated: bool = False
    has_unique: bool = False
    description: str = ""
    created_ms: int = 0
    updated_ms: int = 0
    generated: bool = True
    archived: bool = False
    display_order: int = -1


@dataclass
class TypeData:
    """Everything needed to generate and serve one object type of one portal (cached per process)."""

    hub_id: int
    seed: int
    otype: ObjectType
    size: int
    generated_at_ms: int
    props: dict[str, PropInfo]  # served (non-deleted) properties, in display order
    archived_props: dict[str, PropInfo] = field(default_factory=dict)
    templates: list[dict[str, str | None]] = field(default_factory=list)
    slugs: list[str | None] = field(default_factory=list)
    _projections: dict[tuple[str, ...], tuple[list[dict], bool, bool, bool, bool]] = field(default_factory=dict)
    _json_rows: dict[tuple[str, ...], list[str]] = field(default_factory=dict)

    # --- ids and time -----------------------------------------------------------------------------------
    def created_ms(self, i: int) -> int:
        # Evenly spread, plus a pseudo-random jitter smaller than the step, so timestamps look organic but
        # stay monotonic in the index (which is what makes date filters index ranges).
        step = CREATE_SPAN_MS // max(self.size, 1)
        jitter = (i * 7919 + self.seed * 104729) % step if step > 1 else 0
        return self.generated_at_ms - SPAN_MS + (i * CREATE_SPAN_MS) // max(self.size, 1) + jitter

    def modified_ms(self, i: int) -> int:
        # Big portals get "import batches": the first 200 of every 1,000 records share one timestamp.
        if self.size >= 10_000 and i % 1000 < 200:
            i -= i % 1000
        return self.created_ms(i) + MODIFY_OFFSET_MS

    def row(self, i: int) -> int:
        return ((i + 1) * 2654435761 + self.seed * 40503) % TEMPLATE_ROWS

    # --- generation -------------------------------------------------------------------------------------
    def full_properties(self, i: int) -> dict[str, str | None]:
        """Every served property of generated record i."""
        r = self.row(i)
        props = dict(self.templates[r])
        oid = id_for_index(i)
        props["hs_object_id"] = str(oid)
        props["createdate"] = iso(self.created_ms(i))
        props[self.otype.modified_prop] = iso(self.modified_ms(i))
        if "email" in self.props and self.otype.name == "contacts":
            slug = self.slugs[r]
            props["email"] = f"{slug}{oid}@{EMAIL_DOMAINS[oid % len(EMAIL_DOMAINS)]}" if slug else None
        return props

    def projected_properties(self, i: int, wanted: tuple[str, ...]) -> dict[str, str | None]:
        """Only the wanted properties (all must be served names) of generated record i: the hot path."""
        proj = self._projections.get(wanted)
        if proj is None:
            rows = [{name: tpl.get(name) for name in wanted} for tpl in self.templates]
            mod = self.otype.modified_prop
            proj = (
                rows,
                "hs_object_id" in wanted,
                "createdate" in wanted,
                mod in wanted,
                "email" in wanted and self.otype.name == "contacts",
            )
            if len(self._projections) > 32:
                self._projections.clear()
            self._projections[wanted] = proj
        rows, want_id, want_created, want_mod, want_email = proj
        r = self.row(i)
        props = rows[r].copy()
        if want_id or want_email:
            oid = id_for_index(i)
            if want_id:
                props["hs_object_id"] = str(oid)
            if want_email:
                slug = self.slugs[r]
                props["email"] = f"{slug}{oid}@{EMAIL_DOMAINS[oid % len(EMAIL_DOMAINS)]}" if slug else None
        if want_created:
            props["createdate"] = iso(self.created_ms(i))
        if want_mod:
            props[self.otype.modified_prop] = iso(self.modified_ms(i))
        return props

    def record_json(self, i: int, wanted: tuple[str, ...]) -> bytes:
        """Generated record i as UTF-8 JSON, assembled from pre-encoded template fragments (the list hot path:
        no dict copy, no JSON encoding of the ~60 template values, and bytes so that joining a page of
        non-ASCII text is a plain copy)."""
        rows = self._json_rows.get(wanted)
        if rows is None:
            unique = {"hs_object_id", "createdate", self.otype.modified_prop, "email"}
            rows = []
            for tpl in self.templates:
                frag = json.dumps(
                    {n: tpl.get(n) for n in wanted if n not in unique}, ensure_ascii=False, separators=(",", ":")
                )[1:-1]
                rows.append(frag.encode() + b"," if frag else b"")
            if len(self._json_rows) > 32:
                self._json_rows.clear()
            self._json_rows[wanted] = rows
        r = self.row(i)
        oid = id_for_index(i)
        created = iso(self.created_ms(i))
        modified = iso(self.modified_ms(i))
        tail = ""
        if "email" in wanted:
            if self.otype.name == "contacts":
                slug = self.slugs[r]
                tail = f'"email":"{slug}{oid}@{EMAIL_DOMAINS[oid % len(EMAIL_DOMAINS)]}",' if slug else '"email":null,'
            else:
                tail = '"email":' + json.dumps(self.templates[r].get("email")) + ","
        if "hs_object_id" in wanted:
            tail += f'"hs_object_id":"{oid}",'
        if "createdate" in wanted:
            tail += f'"createdate":"{created}",'
        if self.otype.modified_prop in wanted:
            tail += f'"{self.otype.modified_prop}":"{modified}",'
        props = rows[r] + tail.encode()
        return (
            f'{{"id":"{oid}","properties":{{'.encode()
            + props[:-1]
            + f'}},"createdAt":"{created}","updatedAt":"{modified}","archived":false}}'.encode()
        )


def build_templates(td: TypeData, owners: list[str]) -> None:
    built_in = [p for p in td.otype.props if p.name in td.props and td.props[p.name].generated]
    rows: list[dict[str, str | None]] = []
    slugs: list[str | None] = []
    for r in range(TEMPLATE_ROWS):
        rng = random.Random(f"{td.hub_id}:{td.seed}:{td.otype.name}:{r}")
        first, last = rng.choice(FIRST), rng.choice(LAST)
        company = f"{rng.choice(COMPANY_WORDS)} {rng.choice(COMPANY_SUFFIX)}"
        ctx = GenContext(rng, first, last, company, rng.choice(CITIES), owners, td.generated_at_ms)
        row: dict[str, str | None] = {}
        for p in built_in:
            if p.gen in ("id", "createdate", "modified"):
                continue
            if p.name == "email" and td.otype.name == "contacts":
                row["email"] = None  # filled per record from the slug
                continue
            row[p.name] = None if rng.random() < p.empty else gen_value(p.name, p, ctx)
        for name, info in td.props.items():
            if not info.generated:
                row[name] = None
        rows.append(row)
        slug = (ascii_slug(first) + "." + ascii_slug(last)).strip(".") or "user"
        slugs.append(None if rng.random() < next((p.empty for p in built_in if p.name == "email"), 0) else slug)
    td.templates = rows
    td.slugs = slugs


def props_for_type(otype: ObjectType, custom_rows: list[Any]) -> tuple[dict[str, PropInfo], dict[str, PropInfo]]:
    """Served and archived property definitions: built-ins minus deleted ones, plus added custom ones."""
    tombstones = {c.name: c for c in custom_rows if c.deleted}
    added = {c.name: c for c in custom_rows if not c.deleted}
    served: dict[str, PropInfo] = {}
    archived: dict[str, PropInfo] = {}
    for order, p in enumerate(otype.props):
        info = PropInfo(
            p.name,
            p.label,
            p.type,
            p.field_type,
            p.group,
            p.options,
            p.hubspot_defined,
            p.calculated,
            p.has_unique,
            p.description,
            DEFAULT_OWNER_MS,
            DEFAULT_OWNER_MS,
            display_order=order if p.group == "_system" else -1,
        )
        if p.name in added:  # a built-in custom property deleted and re-added: no generated values any more
            continue
        if p.name in tombstones:
            info.archived = True
            archived[p.name] = info
            continue
        served[p.name] = info
    for c in custom_rows:
        info = PropInfo(
            c.name,
            c.label,
            c.type,
            c.field_type,
            c.group_name,
            tuple((o.get("label", o.get("value", "")), o.get("value", "")) for o in (c.options or [])),
            False,
            False,
            False,
            c.description,
            c.created_ms,
            c.updated_ms,
            generated=False,
            archived=c.deleted,
        )
        if c.deleted:
            if c.name not in archived:
                archived[c.name] = info
        else:
            served[c.name] = info
    return served, archived


_CACHE: dict[tuple, TypeData] = {}
# One build at a time: a portal's first requests come several at once (a sync asks for the properties and its
# first counts together), and each building the same TypeData under the GIL made all of them wait for all the
# builds (three at once: 0.2 s; six, two portals: 0.45 s), which HubSpot's first answers never do. (Builds of
# other keys gain nothing from running side by side: they are CPU under the same GIL.)
_BUILDING = threading.Lock()


def type_data(portal: Any, otype: ObjectType, custom_rows: list[Any] | None = None) -> TypeData:
    """The (cached) TypeData for a portal row; the key covers everything that changes generated values."""
    # pk and created_at too: after a database flush (tests) a recreated portal restarts schema_version at 0, and
    # without them a process would serve the old portal's property list from this cache.
    key = (
        portal.hub_id,
        portal.pk,
        portal.created_at,
        portal.seed,
        otype.name,
        portal.size(otype.name),
        portal.generated_at_ms,
        portal.schema_version,
    )
    td = _CACHE.get(key)
    if td is not None:
        return td
    with _BUILDING:
        td = _CACHE.get(key)
        if td is None:
            td = _build_type_data(portal, otype, custom_rows)
            if len(_CACHE) > 64:
                _CACHE.clear()
            _CACHE[key] = td
    return td


def _build_type_data(portal: Any, otype: ObjectType, custom_rows: list[Any] | None) -> TypeData:
    if custom_rows is None:
        custom_rows = list(portal.custom_properties.filter(object_type=otype.name))
    served, archived = props_for_type(otype, custom_rows)
    td = TypeData(portal.hub_id, portal.seed, otype, portal.size(otype.name), portal.generated_at_ms, served, archived)
    owners = [o["id"] for o in owners_for(portal.hub_id, portal.seed) if not o["archived"]]
    build_templates(td, owners)
    return td


def all_types() -> list[ObjectType]:
    return list(OBJECT_TYPES.values())
