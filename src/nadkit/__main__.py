"""``python -m nadkit`` runs the command-line interface (also under ``torchrun -m nadkit``, where the
processes other than rank 0 keep quiet and the process group is left at the end).

The distributed helpers (and torch with them) are imported only in a launch of several processes
(``WORLD_SIZE`` above 1) or once a command has joined a process group, so a command that needs no
model, or scores one on ONNX Runtime, does not pay for importing torch at start."""

import os
import sys

from nadkit.cli import main


def _several_processes() -> bool:
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


if __name__ == "__main__":
    if _several_processes():
        from nadkit.models.distributed import quiet_other_ranks

        quiet_other_ranks()
    try:
        main()
    finally:
        if "torch.distributed" in sys.modules:
            from nadkit.models.distributed import destroy_process_group

            destroy_process_group()
