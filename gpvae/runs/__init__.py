"""The runs of record: a grid file (:class:`~gpvae.runs.grid.Grid`) executed by Snakemake
(``workflow/Snakefile``) into run folders and committed records.

- :mod:`~gpvae.runs.schema`: the keys a grid file takes;
- :mod:`~gpvae.runs.grid`: the checked grid, its cells and each cell's chapter parameters;
- :mod:`~gpvae.runs.records`: a finished run folder as a committed record, and the tidy table;
- :mod:`~gpvae.runs.persistence`: committed weights, parked checkpoints, restoring a fresh machine;
- :mod:`~gpvae.runs.jobs`: the Snakefile's job entry points (``python -m gpvae.runs``).

Where every file lives is :mod:`gpvae.layout`'s alone. The schema and the records import without
torch, for readers of records.
"""
