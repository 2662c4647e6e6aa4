"""The view layer: what both front ends show, built once.

``arctui runs|show|compare`` (headless, :mod:`arctui.commands.history`) and the app's screens
(:mod:`arctui.screens`) both call these modules, so a run reads the same in a terminal table, in the
app and in a pasted markdown table:

- :mod:`arctui.views.figures`  the figures a run is summarised by (label, definition, which direction
  is better, how each is written) and the short model/encoder labels;
- :mod:`arctui.views.rows`     run rows: the columns a run list shows, and the reads that fill them;
- :mod:`arctui.views.summary`  one run: its block of summary figures (``arctui show`` and the Run
  screen) and the Run screen's snapshot (series, GPUs, log tail);
- :mod:`arctui.views.compare`  comparisons: the baseline rule, ratios with a direction, one markdown
  shape (``arctui compare --format markdown`` and the app's copy/export);
- :mod:`arctui.views.gpus`, :mod:`arctui.views.prompt_lengths`  GPU readings and the new-run form's
  prompt-length analysis (run in a child process);
- :mod:`arctui.views.control`  what the screens ask of the supervisor (stop, resume, launch a study);
- :mod:`arctui.views.manage`   rename, tag, archive and delete runs (``arctui rename|tag|archive|delete``
  and the Runs screen);
- :mod:`arctui.views.evaluations`  what an accuracy covers (tasks, data set) and what unanswered means;
- :mod:`arctui.views.tables`  plain-text, markdown and CSV tables;
- :mod:`arctui.views.logs`    a run's ``train.log`` and ``supervisor.log``, read only where they grew
  (the full-screen log view);
- :mod:`arctui.views.predictions`, :mod:`arctui.views.grid_render`  an evaluation's predictions task
  by task (status, top-2 candidates, wrong cells, two runs' set difference) and ARC grids drawn in
  their colours (``arctui data show``, ``arctui eval --show`` and the Predictions screen).

Rules: nothing here imports textual or torch; the functions that read take an open
``db.store.RunStore`` and are meant for thread workers (the app) or a command (the CLI). The screens
reach the store and the supervisor only through this package (the import-linter contract
``screens-through-views`` in ``pyproject.toml``; ``tests/unit/test_views.py`` checks it too).
"""
