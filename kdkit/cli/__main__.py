"""``python -m kdkit.cli`` (what ``torchrun -m kdkit.cli distill ...`` runs)."""

from kdkit.entry import main

main()
