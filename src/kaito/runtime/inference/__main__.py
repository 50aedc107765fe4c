"""``python -m kaito.runtime.inference``: see :mod:`kaito.runtime.inference.server`."""

import sys

from kaito.runtime.inference.server import main

sys.exit(main())
