"""The standing fault suite of issue 16 ("Nothing lost, nothing stuck"), marker ``faults``: each test
injects one fault through the public API or the real CLI (SQLite and PostgreSQL) and checks the outcome.

| fault | module | outcome checked |
|---|---|---|
| an event with `max_steps`/`step`/`seq` beyond the store's range | test_huge_values, test_unstorable_run | `UnstorableValueError` naming field and value; events before it stored once; `last_error` says why; no traceback; the run ends `failed` with the store's reason (recovery and the live supervisor treat the error as final) |
| NaN/inf/10**400 in a number column; forged event times | test_huge_values | refused with one line / time counted as missing |
| rows holding extreme values (older arctui) | test_huge_values | `runs`/`show`/`compare`/`stop` answer, exit 0 or one line |
| `--where` with 3000 nested parentheses or 5000 terms | test_where_limits | one `FilterError` line (depth 20, 500 comparisons), exit 2 |
| a planted pickle in a checkpoint | test_checkpoint_pickle | never executed; refused with one line (older checkpoint) or ignored (JSON RNG state) |
| a permissive umask on a shared machine | test_permissions | `$ARCTUI_HOME` and run folders 0700, SQLite file 0600; existing ones untouched |
| a stray line with a high `seq` in events.jsonl; a torn line with a real event appended; lines off the schema | test_event_stream | every valid line stored once (20/20 steps and the `end`; cursor = the runner's last seq); the bad line quarantined: a warning in `supervisor.log`, "N line(s) of events.jsonl quarantined" in `last_error` (`arctui show`); a resumed runner's `start` after a stray seq accepted |
| the run folder deleted mid-run (trainer exits 0 without an `end`) | test_vanished_folder | `failed`, `last_error` "run folder disappeared (...)", live supervisor and recovery alike |
| a private PostgreSQL server stopped mid-run, restarted | test_database_restart | live ingest backs off (0.5, 1, 2, ... s in `supervisor.log`, then "store reachable again"); every event written meanwhile stored once; status `completed` |
| a private PostgreSQL server down when the run ends, restarted | test_database_restart | status `failed` and exit code 3 recorded after the restart; no point lost |
| event times before the supervisor watched (re-attach), forged in the future, re-read after a store error | test_database_restart | left out of the event-to-store latency figure |
| the run folder on a 2 MB tmpfs that fills at the first checkpoint | test_disk_full | `failed`, "no space left on device while saving checkpoint-2"; points = the file's steps; no traceback in `launch`/`show` |
| `arctui logs` of a run whose folder was deleted | test_vanished_folder | one `arctui: error:` line naming the gone folder, exit 2; the folder is not re-created |
| a stray line while the run goes on | test_event_stream | the count is in `last_error` (`arctui show`) while the run is still running |
| store errors at the end of a run (ingest, `set_status`) | test_end_of_run_store | retried with backoff: status and exit code recorded, no point lost; past the retry window the supervisor exits, `exit-code` in the run folder holds the code and recovery records it |
| a JSON dataset without ARC tasks; a YAML config with a key twice | test_launch_validation | one `arctui: error:` line, exit 2, no run folder, no run |
| a failed run resumed to completion | test_stale_error | `completed` with no `last_error`; `--where 'error~OLD'` no longer matches; the `error` event kept |
| `supervisor.lock` deleted under a live supervisor | tests/supervisor/test_deleted_lock | no second supervisor: recovery also checks the recorded pid runs `python -m arctui.supervisor RUN_ID` |
"""
