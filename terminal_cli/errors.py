"""Errors raised by terminal_cli, one tree; each carries the exit code the CLI ends with (docs/terminal.md).

    TerminalError (1)                     anything unexpected
    ├── UsageError (2)                    bad option, config file or input on the command line
    │   └── InsecureCenter (2)            a non-loopback center over plain http://
    ├── NoDeviceFound (20)                discovery found no board (and --device / COFFER_DEVICE not given)
    ├── DeviceUnreachable (21)            the board's address does not answer
    ├── CenterUnreachable (22)            the center does not answer (DNS, TCP, TLS, timeout)
    ├── NotEnrolled (32)                  no center token for this device here: run `terminal_cli enroll`
    └── ProblemError (registry code)      a problem+json answer (protocol/problems.py), `.problem`, `.origin`
        ├── DeviceLocked (23)             the device is locked (no token, or its token died)
        ├── WrongPin (24)                 `.tries_left`
        ├── PinLockout (25)               the TPM's dictionary-attack lockout, `.retry_after` seconds
        ├── DeviceTampered (26)           the device's state failed its integrity check: it refuses to spend
        ├── DeviceRevoked (27)            the center stopped orders and credits for this device
        ├── DeviceUnknownToCenter (28)    the center does not know this device (or its token)
        ├── InsufficientFunds (29)
        ├── AlreadyOwned (30)             the item is in the library (`--repurchase` buys it again)
        └── OrderExpired (31)             the order (or a credit) expired before the device committed it

Library errors (httpx) are translated once, in `terminal_cli._http`, with `raise ... from exc`. The named
failures the issue lists get codes of their own (20-32); any other problem type ends with the exit code its
registry entry names (1-13).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from protocol.problems import BY_URI, ProblemDetails, problem

Origin = Literal["center", "device"]


class TerminalError(Exception):
    """Base of every terminal_cli error; `str(err)` is the one line the CLI prints."""

    exit_code: ClassVar[int] = 1
    #: A short hint printed after the message (what to do next), or None.
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    @property
    def code(self) -> int:
        return self.exit_code


class UsageError(TerminalError):
    exit_code = 2


class InsecureCenter(UsageError):
    """The center must be reached over https:// unless it is on loopback (DESIGN.md threat model)."""


class NoDeviceFound(TerminalError):
    exit_code = 20
    hint = "plug the board in, wait with `terminal_cli devices --wait`, or name it with --device URL"


class DeviceUnreachable(TerminalError):
    exit_code = 21


class CenterUnreachable(TerminalError):
    exit_code = 22


class NotEnrolled(TerminalError):
    exit_code = 32
    hint = "run `terminal_cli enroll` first"


class ProblemError(TerminalError):
    """An application/problem+json answer from the center or the device."""

    def __init__(self, origin: Origin, problem: ProblemDetails, *, hint: str | None = None) -> None:
        same = (
            problem.detail is not None and problem.detail.casefold().strip(". ") == problem.title.casefold()
        )
        detail = f": {problem.detail}" if problem.detail and not same else ""
        super().__init__(f"{origin}: {problem.title}{detail}", hint=hint)
        self.origin: Origin = origin
        self.problem = problem

    @classmethod
    def locally(cls, slug: str, detail: str | None = None, origin: Origin = "device") -> ProblemError:
        """The same error as if `origin` had answered problem `slug` (for what this PC knows already)."""
        t = problem(slug)
        return cls(origin, ProblemDetails(type=t.uri, title=t.title, status=t.status, detail=detail))

    @property
    def slug(self) -> str:
        known = BY_URI.get(self.problem.type)
        return known.slug if known else self.problem.type

    @property
    def code(self) -> int:
        if type(self).exit_code != ProblemError.exit_code:
            return self.exit_code  # a named failure: its own code
        known = BY_URI.get(self.problem.type)
        return known.exit_code if known else 1

    def extension(self, name: str) -> Any:
        return (self.problem.model_extra or {}).get(name)


class DeviceLocked(ProblemError):
    exit_code = 23
    hint = "unlock it with `terminal_cli device unlock` (or set COFFER_PIN)"


class WrongPin(ProblemError):
    exit_code = 24

    @property
    def tries_left(self) -> int | None:
        value = self.extension("tries_left")
        return value if isinstance(value, int) else None

    def __str__(self) -> str:
        left = self.tries_left
        return "device: wrong PIN" + (f" ({left} tries left)" if left is not None else "")


class PinLockout(ProblemError):
    exit_code = 25

    @property
    def retry_after(self) -> int | None:
        value = self.extension("retry_after")
        return value if isinstance(value, int) else None

    def __str__(self) -> str:
        after = self.retry_after
        tail = f": retry after {after} s" if after is not None else ""
        return f"device: the TPM is locked out after too many wrong PINs{tail}"


class DeviceTampered(ProblemError):
    exit_code = 26
    hint = "its state does not match its TPM (restored from a copy, altered or damaged): it spends nothing"


class DeviceRevoked(ProblemError):
    exit_code = 27


class DeviceUnknownToCenter(ProblemError):
    exit_code = 28
    hint = "enroll the device with this center: `terminal_cli enroll`"


class InsufficientFunds(ProblemError):
    exit_code = 29
    hint = "redeem a credit with `terminal_cli redeem CODE`"


class AlreadyOwned(ProblemError):
    exit_code = 30
    hint = "open it with `terminal_cli open ITEM -o FILE`, or buy it again with --repurchase"


class OrderExpired(ProblemError):
    exit_code = 31
    hint = "run the purchase again for a fresh order"


#: Problem slugs that name one of the failures above, whoever answered them.
_BY_SLUG: dict[str, type[ProblemError]] = {
    "wrong-pin": WrongPin,
    "pin-lockout": PinLockout,
    "device-locked": DeviceLocked,
    "device-tampered": DeviceTampered,
    "device-revoked": DeviceRevoked,
    "insufficient-funds": InsufficientFunds,
    "already-owned": AlreadyOwned,
    "message-expired": OrderExpired,
    "order-expired": OrderExpired,
}
#: The same slug means something else depending on who answered it.
_BY_ORIGIN: dict[tuple[Origin, str], type[ProblemError]] = {
    ("device", "unauthorized"): DeviceLocked,  # the device's tokens die when it locks
    ("center", "unauthorized"): DeviceUnknownToCenter,  # the center's device token is unknown
    ("center", "not-enrolled"): DeviceUnknownToCenter,
}

#: Every named failure with its exit code, in the order docs/terminal.md and `--help` list them.
NAMED_FAILURES: tuple[tuple[int, str, str], ...] = (
    (NoDeviceFound.exit_code, "no-device", "no board found (and no --device / COFFER_DEVICE)"),
    (DeviceUnreachable.exit_code, "device-unreachable", "the board's address does not answer"),
    (
        CenterUnreachable.exit_code,
        "center-unreachable",
        "the center does not answer (DNS, TCP, TLS, timeout)",
    ),
    (DeviceLocked.exit_code, "device-locked", "the device is locked (unlock it, or set COFFER_PIN)"),
    (WrongPin.exit_code, "wrong-pin", "wrong PIN (the message says how many tries are left)"),
    (PinLockout.exit_code, "pin-lockout", "TPM lockout after too many wrong PINs (retry after N s)"),
    (DeviceTampered.exit_code, "device-tampered", "the device's state failed its integrity check"),
    (DeviceRevoked.exit_code, "device-revoked", "the center revoked this device"),
    (DeviceUnknownToCenter.exit_code, "device-unknown", "the center does not know this device"),
    (InsufficientFunds.exit_code, "insufficient-funds", "the wallet cannot pay the price"),
    (AlreadyOwned.exit_code, "already-owned", "the item is already in the library"),
    (OrderExpired.exit_code, "order-expired", "the order expired before the device committed it"),
    (NotEnrolled.exit_code, "not-enrolled", "this PC holds no center token for the device: enroll"),
)


def from_problem(origin: Origin, body: dict[str, Any], status: int) -> ProblemError:
    """The error for a problem+json body (an unparsable one becomes a generic problem of its status)."""
    try:
        problem = ProblemDetails.model_validate(body)
    except ValueError:
        problem = ProblemDetails(type="about:blank", title=f"HTTP {status}", status=status)
    known = BY_URI.get(problem.type)
    slug = known.slug if known else ""
    cls = _BY_ORIGIN.get((origin, slug)) or _BY_SLUG.get(slug) or ProblemError
    return cls(origin, problem)
