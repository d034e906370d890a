import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

# Tests run with one thread: small tensors, and CI machines have 2 cores.
torch.set_num_threads(1)


@pytest.fixture
def toy():
    from flowdisco.domains import get_domain

    return get_domain("toy2d")
