# `python -m client`: the terminal client (the desktop app is `python -m client.gui`).

import sys

from .cli import main

sys.exit(main())
