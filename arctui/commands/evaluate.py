"""``arctui eval RUN``: evaluate a run's checkpoint with ``python -m runner.evaluate`` and store the metrics.

The evaluation runs as its own process (in its own process group, like training) with its output in
the run folder, ``eval-<step>-<dataset>/`` (``submission.json``, ``predictions.jsonl``,
``metrics.json``, ``events.jsonl``, ``eval.log``). This command follows its event stream, shows the
progress, and records the ``eval_result`` metrics with ``RunStore.record_eval`` for the run, step and
data set, where ``arctui runs``, ``show``, ``compare`` and the TUI read them. Ctrl-C stops the
evaluation (SIGTERM to its process group). The work is
:func:`arctui.supervisor.evaluation.evaluate_run`, the same function that evaluates a run after
training (``eval_after_training: true``). At the end it prints a summary table (every accuracy with
its number of tasks and data set; ``--format json`` for one JSON line instead) and, with ``--show
TASK``, that task's expected output and two most voted predictions as coloured grids.

``arctui eval-diff A B`` compares two runs' evaluations on the same tasks: which tasks each solves that
the other does not (the set difference an iteration note wants), as the app's Compare screen does (t).

    arctui eval RUN [--checkpoint STEP|latest] [--data REF] [--max-tasks N] [--predictions-per-task N]
                    [--temperature T] [--max-new-tokens N] [--batch-size B] [--show TASK]
                    [--format table|json]
    arctui eval-diff RUN_A RUN_B [--data DATASET] [--format table|json]
"""

from __future__ import annotations

import json
import sys

from runner.cli_args import non_negative_float, positive_int
from runner.errors import UserError


def register(subparsers) -> None:
    """Add ``arctui eval`` to the arctui parser."""
    p = subparsers.add_parser(
        "eval",
        help="evaluate a run's checkpoint on ARC tasks (accuracy, pass_n, vote_2, ...)",
        description="Evaluate a run's checkpoint: augmented predictions, voting, ARC metrics, "
        "a Kaggle submission. The metrics are stored with the run.",
    )
    p.add_argument("run", metavar="RUN", help="run id or name")
    p.add_argument("--checkpoint", default="latest", metavar="STEP|latest",
                   help="checkpoint step, or 'latest' (the final weights if training finished)")
    p.add_argument("--data", default=None, metavar="REF",
                   help="tasks to evaluate (default: the run's val_dataset)")
    p.add_argument("--prompt-version", default=None, help="default: the val_dataset's, else v1")
    p.add_argument("--max-tasks", type=positive_int, default=None, metavar="N",
                   help="only the first N tasks (by id); stored as data set DATA[:N]")
    p.add_argument("--predictions-per-task", type=positive_int, default=8, metavar="N",
                   help="prompts per test sample, one per geometric transform (default 8)")
    p.add_argument("--temperature", type=non_negative_float, default=0.0, metavar="T", help="0 = greedy")
    p.add_argument("--max-new-tokens", type=positive_int, default=None, metavar="N",
                   help="longest answer in tokens (default: the runner's, room for 30x30)")
    p.add_argument("--batch-size", type=positive_int, default=8, metavar="B", help="prompts generated together")
    p.add_argument("--max-seq-len", type=positive_int, default=None, metavar="N",
                   help="longer prompts count as unanswered (default: the run's max_seq_len)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--show", default=None, metavar="TASK",
                   help="then draw this task's expected output and two most voted predictions")
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="table: a readable summary (default); json: one JSON line")
    p.set_defaults(func=eval_command)

    p = subparsers.add_parser(
        "eval-diff", help="which evaluated tasks each of two runs solves that the other does not",
        description="Compare two runs' newest evaluations on a data set both evaluated: the tasks solved "
        "by both, by neither, and by one run only (the set difference).",
    )
    p.add_argument("run_a", metavar="RUN_A", help="run id or name")
    p.add_argument("run_b", metavar="RUN_B", help="run id or name")
    p.add_argument("--data", default=None, metavar="DATASET",
                   help="the data set as stored with the metrics (default: the newest both evaluated)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=eval_diff_command)


def eval_command(args) -> int:
    # Imported here: every command module is imported to build the parser, and `arctui runs` should
    # not pay for the evaluation code.
    from arctui.supervisor import open_store
    from arctui.supervisor.evaluation import SUMMARY_METRICS, EvalOptions, EvalRequest, evaluate_run
    from arctui.views.evaluations import read_metrics_file

    request = EvalRequest(
        checkpoint=args.checkpoint, data=args.data, prompt_version=args.prompt_version, max_tasks=args.max_tasks,
        options=EvalOptions(predictions_per_task=args.predictions_per_task, temperature=args.temperature,
                            max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                            max_seq_len=args.max_seq_len, device=args.device),
    )

    def started(plan, pid: int) -> None:
        if not args.quiet:
            what = plan.weights.adapter_path or plan.weights.model_path
            print(f"evaluating run {run.name} step {plan.weights.step} ({what}) on {plan.dataset_name}",
                  file=sys.stderr)

    def progress(event: dict) -> None:
        if event.get("event") == "eval_progress" and not args.quiet:
            rate = event.get("predictions_per_second") or 0.0
            print(f"  {event.get('done')}/{event.get('total')} predictions, {rate:.2f}/s", file=sys.stderr)

    if args.show is not None and args.format == "json":
        raise UserError("--show draws grids, which --format json cannot hold; drop one of the two")
    with open_store(args.db, quiet=True) as store:
        run = store.get_run(args.run)
        if args.show is not None:
            check_task_to_show(run, request, args.show)
        try:
            outcome = evaluate_run(store, run, request, last_step=store.get_summary(run.id).last_step,
                                   on_start=started, on_event=progress)
        except KeyboardInterrupt:
            print("arctui: evaluation stopped", file=sys.stderr)
            return 130
    failure = outcome.failure()
    if failure is not None:
        raise UserError(f"evaluation of run {run.name} failed {failure}")
    result = outcome.result
    metrics = result["metrics"]
    written = read_metrics_file(outcome.plan.out_dir)
    if args.format == "json":
        print(json.dumps({"run": run.name, "step": result["step"], "dataset": result["dataset"],
                          "tasks": written.get("tasks"), **{k: metrics[k] for k in SUMMARY_METRICS if k in metrics},
                          "submission": result.get("submission_path")}))
        return 0
    print(summary_text(run.name, result, written))
    if args.show is not None:
        from arctui.views.predictions import EvalSource, load_predictions

        source = EvalSource(run.id, run.name, int(result["step"]), str(result["dataset"]),
                            result.get("predictions_path"), metrics)
        print()
        show_task(load_predictions(source), args.show)
    return 0


# The figures of the summary table, in the order shown (runner.metrics defines them and says what they mean).
TABLE_METRICS = ("vote_2", "vote_1", "pass_n", "accuracy", "correct_pixels", "correct_size", "unanswered")


def summary_text(run_name: str, result: dict, written: dict) -> str:
    """The readable end of ``arctui eval``: what was evaluated, on how many tasks, each figure."""
    from arctui.formatting import format_number, format_percent
    from arctui.views.evaluations import Coverage
    from arctui.views.tables import text_table
    from runner.metrics import METRIC_MEANINGS, UNANSWERED_MEANS

    metrics = result["metrics"]
    tasks = written.get("scored_tasks", written.get("tasks"))
    coverage = Coverage(int(result["step"]), str(result["dataset"]), tasks, metrics)
    over = f"{tasks} tasks" if tasks is not None else "? tasks"
    # Every figure is a mean over test samples, then over tasks: each is shown with that task count.
    rows = [[name, format_percent(metrics[name], 1), over,
             METRIC_MEANINGS[name] + (" (¹)" if name == "unanswered" else "")]
            for name in TABLE_METRICS if name in metrics]
    if "tokens_per_second" in metrics:
        rows.append(["tokens/s", format_number(metrics["tokens_per_second"]), "", "generation speed"])
    lines = [f"run {run_name}: {coverage.accuracy_text()}", "",
             text_table(["metric", "value", "over", "what it is"], rows), "", f"¹ {UNANSWERED_MEANS}"]
    if written.get("predictions") is not None:
        lines.append(f"{written['predictions']} predictions ({written.get('predictions_per_task')} per test sample), "
                     f"{written.get('prompts_over_msl', 0)} prompts over max_seq_len (unanswered)")
    if result.get("submission_path"):
        lines.append(f"submission {result['submission_path']}")
    if result.get("predictions_path"):
        lines.append(f"predictions {result['predictions_path']}  (browse them in the app: run screen, p)")
    return "\n".join(lines)


def check_task_to_show(run, request, task_id: str) -> None:
    """Refuse ``--show TASK`` before evaluating when TASK is not among the tasks to evaluate."""
    from arctui.supervisor.evaluation import dataset_and_version
    from runner.data import load_tasks

    data, _ = dataset_and_version(run, request.data, request.prompt_version)
    tasks = sorted(load_tasks(data, require_test_outputs=False))
    if request.max_tasks:
        tasks = tasks[: request.max_tasks]
    if task_id not in tasks:
        close = [t for t in tasks if task_id.lower() in t.lower()][:3] or tasks[:3]
        raise UserError(f"--show {task_id}: no such task among the {len(tasks)} evaluated "
                        f"({', '.join(close)}{', ...' if len(tasks) > len(close) else ''}); pass one of their ids")


def show_task(evaluation, task_id: str) -> None:
    """Print one task's test samples: input, expected output, the two most voted candidates."""
    from arctui.views.grid_render import print_sections
    from arctui.views.predictions import invalid_lines, sample_panels, task_heading

    task = evaluation.task(task_id)
    if task is None:
        raise UserError(f"--show {task_id}: the evaluation holds no predictions for it")
    print_sections([(task_heading(task), [p for sample in task.samples for p in sample_panels(sample)])])
    for line in (line for sample in task.samples for line in invalid_lines(sample)):
        print(line)


def eval_diff_command(args) -> int:
    from arctui.supervisor import open_store
    from arctui.views.predictions import read_task_diff, task_diff_lines, task_diff_record

    with open_store(args.db, quiet=True) as store:
        diff = read_task_diff(store, args.run_a, args.run_b, dataset=args.data)
    if args.format == "json":
        print(json.dumps(task_diff_record(diff), indent=1))
    else:
        print("\n".join(task_diff_lines(diff)))
    return 0
