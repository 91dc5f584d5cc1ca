"""``python -m nadkit`` runs the command-line interface (also under ``torchrun -m nadkit``, where the
processes other than rank 0 keep quiet and the process group is left at the end)."""

from nadkit.cli import main
from nadkit.models.distributed import destroy_process_group, quiet_other_ranks

if __name__ == "__main__":
    quiet_other_ranks()
    try:
        main()
    finally:
        destroy_process_group()
