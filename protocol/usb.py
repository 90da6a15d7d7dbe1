"""The USB link's identifiers (DESIGN.md "USB link"), one definition for both ends: the board's configfs
gadget (`device_os.gadget`) announces them and the PC's discovery (`terminal_cli.discovery`) matches them.
Standard library only: the gadget imports it before the device service's dependencies matter.

The serial number is the device_id; these are the rest.
"""

from __future__ import annotations

#: Linux Foundation / Multifunction Composite Gadget: the ids libcomposite gadgets use when they have none of
#: their own.
USB_VENDOR_ID = 0x1D6B
USB_PRODUCT_ID = 0x0104
#: The device service's TCP port on the link (the board's `coffer.conf` listens on it).
DEVICE_PORT = 8470

__all__ = ["DEVICE_PORT", "USB_PRODUCT_ID", "USB_VENDOR_ID"]
