"""``python -m jaxmnist.data`` (see :mod:`jaxmnist.data.cli`)."""

import sys

from jaxmnist.data.cli import main

sys.exit(main())
