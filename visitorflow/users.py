"""Officials' accounts for the dashboard: roles, hashed passwords, sign-in checks.

Why a users file and not OIDC (`st.login`): the province has no identity provider the
dashboard can reach today, the demo and the tests run offline, and `st.login` needs one
(plus Authlib). A JSON file outside git (`auth.users_path`, mode 0600) holds per user a role
and a scrypt hash (stdlib hashlib, salted, parameters stored with the hash so they can be
raised later). `python -m visitorflow.users` manages it; passwords come from a prompt or
stdin, never from the command line (argv is visible to every user of the machine).

Roles, each including the one before: viewer (sees every page), operator (acknowledges
alerts, edits recommended actions), admin (edits capacities and thresholds).
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROLES = ("viewer", "operator", "admin")
NAME = re.compile(r"^[\w.@-]{1,64}$")
MIN_PASSWORD = 8
# scrypt cost: 2**14 × 8 × 128 B = 16 MiB and ~50 ms per check here: cheap for one sign-in,
# costly for guessing. Stored with each hash.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
FILE_VERSION = 1
# Failed sign-ins of a name that has been quiet this long are forgotten (the throttle's file
# would otherwise keep every name ever mistyped).
FORGET_FAILURES_AFTER_S = 24 * 3600


class UsersError(ValueError):
    """The users file or a request to change it cannot be used; the message says the fix."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str
    created_at_utc: str = ""

    def can(self, role: str) -> bool:
        """Whether this user holds `role` or a higher one."""
        return has_role(self.role, role)


def has_role(held: str, needed: str) -> bool:
    return ROLES.index(held) >= ROLES.index(needed)


# -- passwords -------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    """`scrypt$n$r$p$salt$hash` (base64) of a password with a fresh random salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R,
                            p=SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether `password` matches a `hash_password` result (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt),
                                n=int(n), r=int(r), p=int(p), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# Checked against when the name is unknown, so that a wrong name costs as long as a wrong
# password (the time does not tell which names exist).
_DUMMY_HASH = hash_password(secrets.token_hex(8))


# -- the users file --------------------------------------------------------------------------


def load_users(path: Path) -> dict[str, User]:
    """The accounts in the users file ({} if it does not exist); a broken file raises
    UsersError naming the entry, the field and the fix."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsersError(f"users file {path} cannot be read ({exc}); restore it from a backup "
                         "or delete it and add the users again (python -m visitorflow.users)"
                         ) from None
    entries = raw.get("users") if isinstance(raw, dict) else None
    if not isinstance(entries, dict):
        raise UsersError(f"users file {path}: expected an object with a 'users' object")
    users = {}
    for name, entry in entries.items():
        where = f"users file {path}: users.{name}"
        if not NAME.match(name):
            raise UsersError(f"{where}: a name is 1–64 letters, digits, '.', '_', '@' or '-'")
        if not isinstance(entry, dict):
            raise UsersError(f"{where}: expected an object with role and password")
        if entry.get("role") not in ROLES:
            raise UsersError(f"{where}.role = {entry.get('role')!r}: use one of "
                             f"{', '.join(ROLES)}")
        if not str(entry.get("password", "")).startswith("scrypt$"):
            raise UsersError(f"{where}.password is not a scrypt hash: set it with "
                             f"python -m visitorflow.users passwd {name}")
        users[name] = User(name, entry["role"], entry["password"],
                           str(entry.get("created_at_utc", "")))
    return users


def save_users(path: Path, users: dict[str, User]) -> None:
    """Write the users file atomically, readable by its owner only."""
    body = {"version": FILE_VERSION, "users": {
        u.name: {"role": u.role, "password": u.password_hash, "created_at_utc": u.created_at_utc}
        for u in sorted(users.values(), key=lambda u: u.name)}}
    write_private(path, json.dumps(body, ensure_ascii=False, indent=2))


def write_private(path: Path, text: str) -> None:
    """Replace a file atomically (a reader sees the old or the new text, never half of it),
    readable by its owner only; its folder is made owner-only if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UsersError(f"a password needs at least {MIN_PASSWORD} characters")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise UsersError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")


def add_user(path: Path, name: str, role: str, password: str) -> User:
    """Create an account; UsersError if the name is taken or a value is unusable."""
    if not NAME.match(name):
        raise UsersError(f"user name {name!r}: use 1–64 letters, digits, '.', '_', '@' or '-'")
    _check_role(role)
    _check_password(password)
    users = load_users(path)
    if name in users:
        raise UsersError(f"user {name!r} exists: change it with passwd or role")
    user = User(name, role, hash_password(password),
                datetime.now(UTC).replace(microsecond=0).isoformat())
    save_users(path, {**users, name: user})
    return user


def _existing(users: dict[str, User], name: str) -> User:
    if name not in users:
        raise UsersError(f"no user {name!r} (list them with python -m visitorflow.users list)")
    return users[name]


def set_password(path: Path, name: str, password: str) -> None:
    _check_password(password)
    users = load_users(path)
    user = _existing(users, name)
    save_users(path, {**users, name: User(name, user.role, hash_password(password),
                                          user.created_at_utc)})


def set_role(path: Path, name: str, role: str) -> None:
    _check_role(role)
    users = load_users(path)
    user = _existing(users, name)
    save_users(path, {**users, name: User(name, role, user.password_hash, user.created_at_utc)})


def remove_user(path: Path, name: str) -> None:
    users = load_users(path)
    _existing(users, name)
    save_users(path, {n: u for n, u in users.items() if n != name})


def authenticate(users: dict[str, User], name: str, password: str) -> User | None:
    """The user if name and password match, else None (same work either way)."""
    user = users.get(name.strip())
    ok = verify_password(password, user.password_hash if user else _DUMMY_HASH)
    return user if user and ok else None


class LoginThrottle:
    """Failed sign-ins per name: after `max_failures` in a row the name is refused for
    `lockout_s`. A success clears the count. With a `path`, the counts are kept in that file
    (written atomically on each change, read at start), so restarting the dashboard does not
    lift a lockout. Times are wall-clock seconds (time.time()), which survive a restart."""

    def __init__(self, max_failures: int, lockout_s: float, path: Path | None = None) -> None:
        self.max_failures = max_failures
        self.lockout_s = lockout_s
        self.path = None if path is None else Path(path)
        self._lock = threading.Lock()
        self._failures: dict[str, tuple[int, float]] = self._read()

    def _read(self) -> dict[str, tuple[int, float]]:
        if self.path is None:
            return {}
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return {str(name): (int(count), float(last)) for name, (count, last) in raw.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, AttributeError):
            # A damaged file must not lock everybody out nor stop the dashboard: start afresh.
            return {}

    def _save(self) -> None:
        if self.path is not None:
            write_private(self.path, json.dumps(
                {name: [count, last] for name, (count, last) in self._failures.items()}))

    def locked_for(self, name: str, now: float | None = None) -> float:
        """Seconds the name stays refused (0: it may try)."""
        now = time.time() if now is None else now
        with self._lock:
            count, last = self._failures.get(name.strip().lower(), (0, 0.0))
        if count < self.max_failures:
            return 0.0
        return max(0.0, last + self.lockout_s - now)

    def failed(self, name: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        key = name.strip().lower()
        with self._lock:
            count, last = self._failures.get(key, (0, 0.0))
            if count >= self.max_failures and now - last >= self.lockout_s:
                count = 0  # the lockout ran out: a fresh series
            self._failures[key] = (count + 1, now)
            # Names quiet for a day (and past any lockout) are forgotten: the file stays small.
            keep_s = max(self.lockout_s, FORGET_FAILURES_AFTER_S)
            self._failures = {n: (c, t) for n, (c, t) in self._failures.items()
                              if now - t < keep_s}
            self._save()

    def succeeded(self, name: str) -> None:
        with self._lock:
            if self._failures.pop(name.strip().lower(), None) is not None:
                self._save()


def ensure_first_admin(users_path: Path, name: str = "admin") -> Path | None:
    """For the demo: if no users file exists, create one with an admin whose random password
    is written to `first-admin-password.txt` beside it (mode 0600). Returns that file's path,
    or None if the users file already existed."""
    users_path = Path(users_path)
    if users_path.exists():
        return None
    password = secrets.token_urlsafe(12)
    add_user(users_path, name, "admin", password)
    secret = users_path.with_name("first-admin-password.txt")
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(f"user: {name}\npassword: {password}\n"
                 f"change it: python -m visitorflow.users passwd {name}\n")
    return secret


# -- command line ----------------------------------------------------------------------------


def _read_password(stdin: bool) -> str:
    if stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise UsersError("the two passwords differ")
    return first


def main(argv: list[str] | None = None) -> int:
    from visitorflow.settings import SettingsError, get_settings

    parser = argparse.ArgumentParser(
        prog="python -m visitorflow.users",
        description="Manage the dashboard's accounts (passwords from a prompt or stdin).")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="create an account")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, default="viewer")
    passwd = sub.add_parser("passwd", help="set a new password")
    passwd.add_argument("name")
    for p in (add, passwd):
        p.add_argument("--password-stdin", action="store_true",
                       help="read the password from the first line of stdin")
    role = sub.add_parser("role", help="change a role")
    role.add_argument("name")
    role.add_argument("role", choices=ROLES)
    remove = sub.add_parser("remove", help="delete an account")
    remove.add_argument("name")
    sub.add_parser("list", help="names and roles")
    args = parser.parse_args(argv)
    try:
        path = get_settings().auth.users_path
        if args.command == "add":
            add_user(path, args.name, args.role, _read_password(args.password_stdin))
            print(f"added {args.name} ({args.role}) to {path}")
        elif args.command == "passwd":
            set_password(path, args.name, _read_password(args.password_stdin))
            print(f"password of {args.name} changed")
        elif args.command == "role":
            set_role(path, args.name, args.role)
            print(f"{args.name} is now {args.role}")
        elif args.command == "remove":
            remove_user(path, args.name)
            print(f"removed {args.name}")
        else:
            for user in load_users(path).values():
                print(f"{user.name}\t{user.role}\t{user.created_at_utc}")
    except (UsersError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
