"""``python -m fake_anthropic [--host H] [--port P] [--chunk-delay-ms MS]``."""

import sys

from .server import main

sys.exit(main())
