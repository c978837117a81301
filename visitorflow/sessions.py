"""Signed, expiring sign-in tokens: what lets a dashboard session survive a reload.

A control-room screen that reloads, or a laptop that wakes, opens a new Streamlit session
and so loses everything kept in the old one. The dashboard therefore gives the browser a
cookie holding a token: the user name, the role at sign-in, the issue time and a random id,
signed with HMAC-SHA256 (`itsdangerous`) under a server secret. The browser can read the
token but not forge or alter it. A token is refused when

- its signature does not match (tampered, or signed under another secret),
- it is older than `auth.session_hours` (the same limit as a session without reload),
- its account is gone from the users file, or the account's role differs from the token's
  (a role change ends the session; the official signs in again under the new role),
- it was signed out: sign-out records the token's id in a small file until the token would
  have expired anyway, so a copy of the cookie is refused from then on.

The secret comes from `auth.session_secret` if set (several dashboard processes behind one
address share it), else from a file made once beside the users file,
mode 0600: outside git, like the users file itself. Expiry uses the wall clock (time.time),
never the simulated scenario clock: an official's session lasts real hours.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from itsdangerous import BadSignature, URLSafeSerializer

from visitorflow.users import User, UsersError, write_private

if TYPE_CHECKING:
    from visitorflow.settings import AuthSettings

COOKIE_NAME = "visitorflow_session"
SECRET_FILE = "dashboard-session-secret"
SIGNED_OUT_FILE = "dashboard-signed-out.json"
THROTTLE_FILE = "dashboard-sign-in-failures.json"
# Separates these signatures from any other use of the same secret.
SALT = "visitorflow.dashboard.session"
# A token issued this far "in the future" is refused: clocks of one machine do not disagree
# by more, so it can only come from a wrong secret or clock.
CLOCK_SKEW_S = 60.0
# 32 random bytes: the HMAC-SHA256 key size; guessing it is out of reach.
SECRET_BYTES = 32


class Refused(StrEnum):
    """Why a token no longer signs anybody in."""

    TAMPERED = "tampered"
    EXPIRED = "expired"
    REMOVED = "removed"
    ROLE_CHANGED = "role_changed"
    SIGNED_OUT = "signed_out"


@dataclass(frozen=True)
class Session:
    """What a valid signature vouches for."""

    name: str
    role: str
    issued_unix: float
    token_id: str


def state_dir(users_path: Path) -> Path:
    """Where the dashboard keeps its sign-in state (secret, signed-out tokens, failed sign-ins):
    the users file's folder, already private and outside git."""
    return Path(users_path).parent


def session_secret(folder: Path, configured: str | None = None) -> bytes:
    """The signing secret: `configured` (the settings' `auth.session_secret`) if set, else
    the secret file in `folder`, created (mode 0600) on first use."""
    if configured:
        return configured.encode("utf-8")
    path = Path(folder) / SECRET_FILE
    try:
        return bytes.fromhex(path.read_text(encoding="utf-8").strip())
    except FileNotFoundError:
        pass
    except ValueError:
        raise UsersError(f"{path} is not a hex secret: delete it (every official signs in "
                         "again) and reload") from None
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        # O_EXCL: two processes starting at once cannot each write a secret of their own.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return bytes.fromhex(path.read_text(encoding="utf-8").strip())
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(secrets.token_hex(SECRET_BYTES))
    return bytes.fromhex(path.read_text(encoding="utf-8").strip())


class Sessions:
    """Issues and checks the dashboard's sign-in tokens; records sign-outs in `signed_out_path`."""

    def __init__(self, secret: bytes, session_hours: float, signed_out_path: Path) -> None:
        self.limit_s = session_hours * 3600
        self.signed_out_path = Path(signed_out_path)
        self._serializer = URLSafeSerializer(
            secret, salt=SALT, signer_kwargs={"digest_method": hashlib.sha256})
        self._lock = threading.Lock()
        self._signed_out: dict[str, float] = {}
        self._signed_out_mtime: float | None = None

    def issue(self, user: User, now: float | None = None) -> str:
        """A token for `user`, valid for the session limit from `now`."""
        now = time.time() if now is None else now
        return self._serializer.dumps(
            {"n": user.name, "r": user.role, "t": now, "i": secrets.token_urlsafe(12)})

    def read(self, token: str) -> Session | None:
        """The token's content if its signature holds, else None (nothing else checked)."""
        try:
            data = self._serializer.loads(token)
            return Session(str(data["n"]), str(data["r"]), float(data["t"]), str(data["i"]))
        except (BadSignature, KeyError, TypeError, ValueError):
            return None

    def check(self, token: str, users: dict[str, User],
              now: float | None = None) -> tuple[User | None, Refused | None]:
        """The signed-in user, or None and the reason the token is refused."""
        now = time.time() if now is None else now
        session = self.read(token)
        if session is None or session.issued_unix > now + CLOCK_SKEW_S:
            return None, Refused.TAMPERED
        if now - session.issued_unix > self.limit_s:
            return None, Refused.EXPIRED
        if session.token_id in self._signed_out_ids():
            return None, Refused.SIGNED_OUT
        user = users.get(session.name)
        if user is None:
            return None, Refused.REMOVED
        if user.role != session.role:
            return None, Refused.ROLE_CHANGED
        return user, None

    def seconds_left(self, token: str, now: float | None = None) -> int:
        """Whole seconds until the token expires (0 if it has or is not ours): the cookie's
        Max-Age, so the browser forgets it when the server would refuse it."""
        now = time.time() if now is None else now
        session = self.read(token)
        if session is None:
            return 0
        return max(0, int(session.issued_unix + self.limit_s - now))

    def sign_out(self, token: str, now: float | None = None) -> None:
        """Refuse this token from now on (kept until it would have expired anyway)."""
        now = time.time() if now is None else now
        session = self.read(token)
        if session is None:
            return
        with self._lock:
            signed_out = {i: until for i, until in self._read_signed_out().items()
                          if until > now}
            signed_out[session.token_id] = session.issued_unix + self.limit_s
            write_private(self.signed_out_path, json.dumps(signed_out))
            self._signed_out, self._signed_out_mtime = signed_out, None

    def _signed_out_ids(self) -> dict[str, float]:
        """Signed-out token ids, re-read when the file changes (another dashboard process may
        have written it)."""
        try:
            mtime = self.signed_out_path.stat().st_mtime
        except FileNotFoundError:
            return {}
        with self._lock:
            if mtime != self._signed_out_mtime:
                self._signed_out, self._signed_out_mtime = self._read_signed_out(), mtime
            return self._signed_out

    def _read_signed_out(self) -> dict[str, float]:
        try:
            raw = json.loads(self.signed_out_path.read_text(encoding="utf-8"))
            return {str(i): float(until) for i, until in raw.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            # Stopping with the fix is safer than accepting tokens that were signed out.
            raise UsersError(f"{self.signed_out_path} cannot be read ({exc}); delete it and "
                             "every session signed out since may sign in again") from None


def sessions_for(auth: AuthSettings) -> Sessions:
    """The dashboard's sessions for these settings: secret and sign-outs beside the users file."""
    folder = state_dir(auth.users_path)
    configured = auth.session_secret.get_secret_value() if auth.session_secret else None
    return Sessions(session_secret(folder, configured), auth.session_hours,
                    folder / SIGNED_OUT_FILE)
