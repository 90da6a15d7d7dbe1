"""Errors raised by the device core, one tree (STYLE.md 8). The HTTP layer maps each to a problem slug.

DeviceError
├── NotProvisioned        first boot (`device_os provision`) has not run         -> service-unavailable
├── NotSetUp              no sealed DEK and no state                               -> not-set-up
├── AlreadySetUp                                                                   -> already-set-up
├── Locked                the DEK is not in RAM (never unlocked, locked, idle)   -> device-locked
├── Tampered              state missing, rolled back or undecryptable             -> device-tampered
├── WeakPin               PIN shorter than 6 digits or not all digits             -> weak-pin
├── WrongPin              (.tries_left) the TPM or the RAM check refused the PIN  -> wrong-pin
├── PinLockout            (.retry_after) TPM dictionary-attack lockout            -> pin-lockout
├── NotEnrolled                                                                    -> not-enrolled
├── AlreadyEnrolled       enrolled with another root / device                      -> already-enrolled
├── UntrustedKeyset       key set not signed by the pinned root                    -> untrusted-keyset
├── InvalidMessage        a center-signed message failed verification             -> invalid-signature
│   ├── MessageExpired    its exp is not after the time floor                      -> message-expired
│   └── WrongDevice       addressed to another device                              -> wrong-device
├── InsufficientFunds     the purses cannot pay (nothing debited)                  -> insufficient-funds
├── AlreadyOwned          the item is in the library (repurchase not asked)       -> already-owned
├── CreditAlreadyApplied  the credit_id was applied before                   -> credit-already-applied
├── OrderSettled          the order's receipt already cleared its outbox entry    -> order-settled
├── UnknownOrder          a receipt or lookup names no committed order            -> not-found
├── InvalidReceipt        the receipt does not match the stored payment           -> invalid-payment
├── NotFound              no such library item                                     -> not-found
├── ContentMismatch       content hash or length differs from the order           -> content-mismatch
├── CorruptContent        a content stream failed authentication or is cut short  -> corrupt-content
├── Conflict              the request conflicts with the state (e.g. overflow)    -> conflict
├── StorageFull           the data partition is full (nothing was changed)        -> service-unavailable
└── Unavailable           a commit failed half-way (TPM unreachable); recover     -> service-unavailable
"""

from __future__ import annotations


class DeviceError(Exception):
    """Base of every error raised by device_os (outside the TPM adapter's own tree)."""

    slug = "internal-error"


class NotProvisioned(DeviceError):
    slug = "service-unavailable"


class NotSetUp(DeviceError):
    slug = "not-set-up"


class AlreadySetUp(DeviceError):
    slug = "already-set-up"


class Locked(DeviceError):
    slug = "device-locked"


class Tampered(DeviceError):
    slug = "device-tampered"


class WeakPin(DeviceError):
    slug = "weak-pin"


class WrongPin(DeviceError):
    slug = "wrong-pin"

    def __init__(self, tries_left: int | None) -> None:
        super().__init__("wrong PIN" if tries_left is None else f"wrong PIN ({tries_left} tries left)")
        self.tries_left = tries_left


class PinLockout(DeviceError):
    slug = "pin-lockout"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"TPM dictionary-attack lockout; retry after {retry_after} s")
        self.retry_after = retry_after


class NotEnrolled(DeviceError):
    slug = "not-enrolled"


class AlreadyEnrolled(DeviceError):
    slug = "already-enrolled"


class UntrustedKeyset(DeviceError):
    slug = "untrusted-keyset"


class InvalidMessage(DeviceError):
    slug = "invalid-signature"


class MessageExpired(InvalidMessage):
    slug = "message-expired"


class WrongDevice(InvalidMessage):
    slug = "wrong-device"


class InsufficientFunds(DeviceError):
    slug = "insufficient-funds"


class AlreadyOwned(DeviceError):
    slug = "already-owned"


class CreditAlreadyApplied(DeviceError):
    slug = "credit-already-applied"


class OrderSettled(DeviceError):
    slug = "order-settled"


class UnknownOrder(DeviceError):
    slug = "not-found"


class InvalidReceipt(DeviceError):
    slug = "invalid-payment"


class NotFound(DeviceError):
    slug = "not-found"


class ContentMismatch(DeviceError):
    slug = "content-mismatch"


class CorruptContent(DeviceError):
    slug = "corrupt-content"


class Conflict(DeviceError):
    slug = "conflict"


class StorageFull(DeviceError):
    """ENOSPC/EDQUOT writing a blob or `state.next`: refused before the commit point, nothing changed."""

    slug = "service-unavailable"


class Unavailable(DeviceError):
    slug = "service-unavailable"
