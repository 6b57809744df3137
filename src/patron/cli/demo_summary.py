"""What `patron demo` prints every time it runs: the URLs, the keys (or the exact commands
that make fresh ones), voucher codes, sample members and a request to try.

API keys are stored only as hashes, so the demo keeps the ones it made in a file beside
the database (the keys file, mode 0600), and reads them back when it runs again on a
database it already filled (`make run` does that at every start). Only `patron demo`
writes this file: it is a convenience of a local demo, never something a real deployment
does with its keys."""

from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.engine import make_url

from patron.config import Settings
from patron.tenancy.models import Role

KEYS_FILE_NOTE = ("Written by `patron demo`: the demo's API keys, kept so that `make run` "
                  "can show them again (the database stores only their hashes). A demo "
                  "convenience: delete this file when you no longer need it.")


@dataclass(frozen=True)
class DemoKey:
    label: str
    role: Role
    merchant_number: int | None = None
    terminal_id: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class Voucher:
    label: str
    code: str


@dataclass(frozen=True)
class SampleMember:
    merchant_number: int
    merchant_name: str
    member_number: str
    card_uid: str
    phone: str | None


@dataclass(frozen=True)
class DemoPerson:
    """A staff user of the web app the demo made, with the password it chose."""

    label: str
    role: str
    email: str
    password: str


@dataclass(frozen=True)
class DemoSummary:
    keys: list[DemoKey]
    vouchers: list[Voucher]
    samples: list[SampleMember]
    # Keys the file did not give (missing, from another database, revoked): the commands
    # that make fresh ones are printed instead.
    missing_keys: list[DemoKey]
    # Why the keys file could not be used (None: it was, or the demo was just built).
    keys_note: str | None = None
    vouchers_note: str | None = None
    people: list[DemoPerson] = field(default_factory=list)
    # The merchant numbers, for the join links.
    merchant_numbers: list[int] = field(default_factory=list)


def keys_file_path(database_url: str) -> Path:
    """Beside an SQLite database file, named after it (``var/patron.db`` →
    ``var/patron.demo-keys.json``); for any other database, ``var/demo-keys.json`` under
    the current directory."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        database = Path(url.database or "")
        return database.with_name(f"{database.stem}.demo-keys.json")
    return Path("var") / "demo-keys.json"


def write_keys_file(path: Path, keys: list[DemoKey], vouchers: list[Voucher],
                    people: list[DemoPerson]) -> None:
    """Replace the keys file at once, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    content = json.dumps({
        "note": KEYS_FILE_NOTE,
        "keys": [{**asdict(key), "role": key.role.value} for key in keys],
        "vouchers": [asdict(voucher) for voucher in vouchers],
        "people": [asdict(person) for person in people],
    }, indent=2, ensure_ascii=False) + "\n"
    # mkstemp creates the file with mode 0600; os.replace swaps it in whole.
    handle, temporary = tempfile.mkstemp(prefix=".demo-keys-", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(content)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_keys_file(path: Path) -> tuple[list[DemoKey], list[Voucher], list[DemoPerson]] | None:
    """The keys, codes and staff sign-ins the demo recorded; None when the file is missing
    or unreadable."""
    try:
        document: Any = json.loads(path.read_text(encoding="utf-8"))
        keys = [DemoKey(label=str(item["label"]), role=Role(item["role"]),
                        merchant_number=item.get("merchant_number"),
                        terminal_id=item.get("terminal_id"), key=item.get("key"))
                for item in document["keys"]]
        vouchers = [Voucher(label=str(item["label"]), code=str(item["code"]))
                    for item in document.get("vouchers", [])]
        people = [DemoPerson(label=str(item["label"]), role=str(item["role"]),
                             email=str(item["email"]), password=str(item["password"]))
                  for item in document.get("people", [])]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return keys, vouchers, people


def patron_command(settings: Settings) -> str:
    """How to run `patron` against this database from the current directory: the program
    as it was started (``.venv/bin/patron`` under `make run`), with the database's URL when
    it is not the default (its password, if any, masked)."""
    program = sys.argv[0] if Path(sys.argv[0]).name == "patron" else "patron"
    default = Settings.model_fields["database_url"].default
    if settings.database_url == default:
        return shlex.quote(program)
    url = make_url(settings.database_url).render_as_string(hide_password=True)
    return f"PATRON_DATABASE_URL={shlex.quote(url)} {shlex.quote(program)}"


def key_command(key: DemoKey, patron: str) -> str:
    """The `patron keys create` command that makes a fresh key like ``key``."""
    parts = ["keys", "create", "--role", key.role.value]
    if key.terminal_id is not None:
        parts += ["--terminal-id", key.terminal_id]
    elif key.merchant_number is not None:
        parts += ["--merchant-number", str(key.merchant_number)]
    parts += ["--label", f"demo {key.label}"]
    return " ".join([patron, *(shlex.quote(part) for part in parts)])


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def identify_curl(base_url: str, key: str, body: dict[str, str]) -> str:
    return (f"curl -s -X POST {base_url}/v1/identify -H 'Authorization: Bearer {key}' "
            f"-H 'Content-Type: application/json' -d '{json.dumps(body)}'")


def print_summary(summary: DemoSummary, *, settings: Settings, keys_file: Path | None,
                  headline: str, try_key_label: str, out: TextIO) -> None:
    base = settings.public_base_url
    patron = patron_command(settings)

    def say(text: str = "") -> None:
        print(text, file=out)

    say(headline)
    say(f"  Web app:  {base}/  (members: {base}/wallet; staff: {base}/login)")
    for number in summary.merchant_numbers[:1]:
        say(f"  Join:     {base}/join?m={number:05d}  (a member's phone: joins and shows "
            "the wallet)")
    say(f"  API:      {base}/v1")
    say(f"  API docs: {base}/docs")
    say(f"  Health:   {base}/health")
    if summary.people:
        say("Staff sign-ins for the web app (kept in the same file as the keys):")
        for person in summary.people:
            say(f"  {person.label:26s} {person.email:34s} {person.password}")
    elif summary.merchant_numbers:
        say(f"Staff sign-ins: make one with `{patron} staff add --role operator "
            "--email you@example.com --name You` (it prints an invitation link).")
    if summary.keys:
        kept = ("shown once: they could not be kept" if keys_file is None else
                f"kept in {_shown(keys_file)}, readable by you only, so that the next run "
                "shows them again")
        say(f"API keys (use as 'Authorization: Bearer <key>'; {kept}):")
        for key in summary.keys:
            say(f"  {key.label:40s} {key.key}")
    if summary.missing_keys:
        if summary.keys_note:
            say(summary.keys_note)
        say("Make fresh keys (each command prints its key alone on the last line):")
        for key in summary.missing_keys:
            say(f"  {key_command(key, patron)}")
    if summary.vouchers:
        say("Voucher codes (10% off, 5 uses each; POST /v1/vouchers/validate with a "
            "terminal key):")
        for voucher in summary.vouchers:
            say(f"  {voucher.label:40s} {voucher.code}")
    elif summary.vouchers_note:
        say(summary.vouchers_note)
    if summary.samples:
        say("Sample members (POST /v1/identify with exactly one of barcode, card_uid, phone; "
            "a terminal key of their merchant):")
        for sample in summary.samples:
            phone = f"phone {sample.phone}" if sample.phone else "(anonymous: card only)"
            say(f"  {sample.merchant_number:05d} {sample.merchant_name:18s} barcode "
                f"{sample.member_number}  card_uid {sample.card_uid}  {phone}")
    try_key = next((key for key in summary.keys if key.label == try_key_label), None)
    first = summary.samples[0] if summary.samples else None
    if first is not None:
        say("Try it:")
        body = {"barcode": first.member_number}
        if try_key is not None and try_key.key is not None:
            say(f"  {identify_curl(base, try_key.key, body)}")
        else:
            fresh = next((key for key in summary.missing_keys
                          if key.label == try_key_label), None)
            if fresh is not None:
                say(f"  POS_KEY=$({key_command(fresh, patron)} | tail -n 1)")
                say(f"  {identify_curl(base, '$POS_KEY', body)}".replace(
                    "'Authorization: Bearer $POS_KEY'", '"Authorization: Bearer $POS_KEY"'))
