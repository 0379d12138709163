"""Azurite, the Azure Storage emulator: its well-known development account, in one place.

The account name and key are Azurite's published defaults, the same on every machine; they
open nothing but a local emulator.
"""

from __future__ import annotations

ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEFAULT_BLOB_PORT = 10000


def connection_string(port: int = DEFAULT_BLOB_PORT, host: str = "127.0.0.1") -> str:
    """A storage connection string for Azurite's blob service on ``host:port``."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://{host}:{port}/{ACCOUNT_NAME};"
    )


if __name__ == "__main__":
    import sys

    print(connection_string(int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_BLOB_PORT))
