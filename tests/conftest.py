"""Every test process, and every process a test starts, tunes the auto kernel into a cache of its own:
never the user's, and never one left over from an earlier run."""

import os
import tempfile

from model.kernel_choice import CACHE_ENV

os.environ[CACHE_ENV] = tempfile.mkdtemp(prefix="attnbench-test-cache-")
