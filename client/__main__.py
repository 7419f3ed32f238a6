"""`python -m parley_chat.client`: the terminal client, the same as `parley-cli`
(the desktop app is `parley`).
"""

import sys

from .cli import main

sys.exit(main())
