import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))

from physweep_testkit import install_physics_fakes  # noqa: E402

install_physics_fakes()
