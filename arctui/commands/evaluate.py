"""``arctui eval RUN``: evaluate a run's checkpoint with ``python -m runner.evaluate`` and store the metrics.

The evaluation runs as its own process (in its own process group, like training) with its output in
the run folder, ``eval-<step>-<dataset>/`` (``submission.json``, ``predictions.jsonl``,
``metrics.json``, ``events.jsonl``, ``eval.log``). This command follows its event stream, shows the
progress, and records the ``eval_result`` metrics with ``RunStore.record_eval`` for the run, step and
data set, where ``arctui runs``, ``show``, ``compare`` and the TUI read them. Ctrl-C stops the
evaluation (SIGTERM to its process group). The work is
:func:`arctui.supervisor.evaluation.evaluate_run`, the same function that evaluates a run after
training (``eval_after_training: true``).

    arctui eval RUN [--checkpoint STEP|latest] [--data REF] [--max-tasks N] [--predictions-per-task N]
                    [--temperature T] [--max-new-tokens N] [--batch-size B]
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
    p.set_defaults(func=eval_command)


def eval_command(args) -> int:
    # Imported here: every command module is imported to build the parser, and `arctui runs` should
    # not pay for the evaluation code.
    from arctui.supervisor import open_store
    from arctui.supervisor.evaluation import SUMMARY_METRICS, EvalOptions, EvalRequest, evaluate_run

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

    with open_store(args.db, quiet=True) as store:
        run = store.get_run(args.run)
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
    print(json.dumps({"run": run.name, "step": result["step"], "dataset": result["dataset"],
                      **{k: metrics[k] for k in SUMMARY_METRICS if k in metrics},
                      "submission": result.get("submission_path")}))
    return 0
