# `python -m parley_chat.client`: the terminal client (the desktop app is `python -m parley_chat.client.gui`).

import sys

from .cli import main

sys.exit(main())
