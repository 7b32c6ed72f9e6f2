"""python -m vperfetto.timeline TRACE --svg OUT.svg --html OUT.html"""

import sys

from .cli import main

sys.exit(main())
