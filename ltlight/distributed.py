"""The one question ltlight asks of ``torch.distributed``: is this process one of several?"""

import torch


def is_distributed() -> bool:
    """Whether ``torch.distributed`` is initialised with more than one process."""
    return (
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_world_size() > 1
    )
