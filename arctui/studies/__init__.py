"""Studies: a base run config plus variants, run as one and reported as one table (docs/studies.md).

- :mod:`arctui.studies.spec`       study files -> validated variants (nothing is built)
- :mod:`arctui.studies.control`    launch / stop / resume a study
- :mod:`arctui.studies.scheduler`  the queue (in the store) and the detached scheduler
- :mod:`arctui.studies.table`      the study table (text, markdown, json, csv)
- :mod:`arctui.studies.plots`      ``report --plots``: PNG figures and report.md (matplotlib)

No textual, no torch.
"""
