"""End-to-end encryption of private messages for parley's clients (docs/security.md).

crypto (the primitives, through PyNaCl), keystore (keys at rest), pins (trust on
first use of peers' keys), localstore (decrypted messages kept on the device),
session (all of it on a ChatClient), files (where a device keeps it all).
"""
