"""``python -m kaito.operator``: the same as the ``kaito-operator`` console script."""

import sys

from kaito.operator import main

sys.exit(main())
