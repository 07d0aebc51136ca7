"""``python -m jaxmnist.serve RUN_DIR`` (see :func:`jaxmnist.serve.app.main`)."""

import sys

from jaxmnist.serve.app import main

sys.exit(main())
