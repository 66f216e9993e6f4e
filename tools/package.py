#!/usr/bin/env python3
"""SM-signed model packages: keygen | sign | verify | inspect | encrypt.

    python tools/package.py keygen --out signer.key --passphrase-env SIGNER_PASS
    python tools/package.py sign models/cn-clip --key signer.key --passphrase-env SIGNER_PASS \\
        --model cn-clip-vit-b-16 --version 1.0 --sequence 1
    python tools/package.py verify models/cn-clip --trust signer.pub --model cn-clip-vit-b-16

Exit codes: 0 ok, 2 usage, 3 key/config/I-O, 10-14 refused (see docs/model_package.md).
Starts fast on purpose: it imports paddle_mm.package only, never paddle.
"""

import os
import sys


def _main() -> int:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout
    from paddle_mm.package.cli import main

    return main()


if __name__ == "__main__":
    sys.exit(_main())
