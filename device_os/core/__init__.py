"""The device core (DESIGN.md "Device state and crash safety", flows 1-2 and 5.3, "Pricing").

Layers, bottom up:
    fsio       durable file primitives (write + fsync, rename + directory fsync)
    faults     the test-only fault hook naming each step of the commit protocol
    aead       the device's AEAD choice (ChaCha20-Poly1305 without the CPU's `aes` flag)
    statedoc   the state document codec: header | salt | nonce | AEAD body
    body       the typed state body (purses, spent credits, outbox, library, enrollment, time floor)
    store      the commit protocol over a `Counter` (the TPM NV counter) and start-up recovery
    content    the encrypted content store (content stream v1 under the DEK)
    keys       the key directory (`keys/`, `setup.next/`, `pin.next/`) and its crash-safe swaps
    wallet     wallet operations on an unlocked device (credits, purchases, receipts, statements)
    device     the device: provision, setup, unlock, lock, PIN change, auto-lock; the HTTP layer's entry
"""
