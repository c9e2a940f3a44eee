"""``python -m fake_anthropic [--host H] [--port P] [--chunk-delay-ms MS]
[--requests-per-minute N] [--tokens-per-minute N]
[--storm-seconds S] [--storm-status 429|529] [--storm-retry-after S]
[--batch-delay-ms MS]``."""

import sys

from .server import main

sys.exit(main())
