"""Keep every test's files out of the working tree (settings are read once per process)."""

import os
import tempfile

os.environ.setdefault("SIGNUPFLOW_DATA_DIR", tempfile.mkdtemp(prefix="signupflow-test-"))
