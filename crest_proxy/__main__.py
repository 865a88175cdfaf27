"""``python -m crest_proxy`` runs the CLI."""

import sys

from crest_proxy.cli import main

sys.exit(main())
