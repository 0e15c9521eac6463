#!/usr/bin/env python3
"""Run the resnet-tl CLI from a checkout without installing: `python cli.py train`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from resnet_tl.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
