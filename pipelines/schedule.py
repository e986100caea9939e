"""Create or remove the recurring run that starts the retraining pipeline on a schedule.

    python -m pipelines.schedule create --endpoint URL --experiment NAME \
        --name rnn-classifier-retraining --cron '0 0 6 * * *' \
        --pipeline build/retraining_pipeline.yaml --set bucket_uri=gs://BUCKET [--set ...]
    python -m pipelines.schedule delete --endpoint URL --experiment NAME \
        --name rnn-classifier-retraining

Uses the kfp Python client rather than `kfp recurring-run create`, for
three reasons: the CLI sends every parameter as a string (a float such as
drift_threshold must arrive as a number), it creates a disabled schedule
unless told `--enabled`, and it cannot find a recurring run by name to
delete it. The schedule is created enabled, with at most one run at a time
(two runs must not race to promote) and no catch-up of missed runs.

`create` replaces a recurring run of the same name in the experiment, so
running it again changes the schedule; `delete` removes every recurring run
of that name and succeeds when there is none.

KFP's cron has six fields, seconds first: '0 0 6 * * *' is 06:00:00 daily.
"""

import argparse
import json
import sys
from pathlib import Path

DEFAULT_NAME = "rnn-classifier-retraining"


def check_cron(cron: str) -> str:
    """KFP's six-field cron (seconds first); a five-field one would run at the wrong times."""
    fields = cron.split()
    if len(fields) != 6:
        raise argparse.ArgumentTypeError(
            f"cron {cron!r} has {len(fields)} fields; KFP's cron has 6, seconds first "
            "(e.g. '0 0 6 * * *' for 06:00 daily)")
    return cron


def connect(endpoint: str):
    """A kfp Client for `endpoint` (credentials, if any, from the usual kfp sources)."""
    import warnings

    from kfp import Client

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return Client(host=endpoint)


def find_recurring_runs(client, experiment_id: str, name: str) -> list:
    """The recurring runs of `experiment_id` whose display name is `name`."""
    name_filter = json.dumps({"predicates": [
        {"operation": "EQUALS", "key": "display_name", "stringValue": name}]})
    found, token = [], ""
    while True:
        page = client.list_recurring_runs(experiment_id=experiment_id, page_token=token,
                                          page_size=100, filter=name_filter)
        # The filter is applied by the server; checking the name again keeps a
        # server that ignores it from deleting someone else's schedule.
        found += [run for run in page.recurring_runs or [] if run.display_name == name]
        token = page.next_page_token
        if not token:
            return found


def create(args) -> int:
    from pipelines.run_local import parse_settings, pipeline_parameter_types

    types = pipeline_parameter_types(args.pipeline)
    parameters = parse_settings(args.settings, types)
    missing = sorted(set(required_parameters(args.pipeline)) - set(parameters))
    if missing:
        raise SystemExit(f"error: set the required pipeline parameter(s) {missing} "
                         "with --set NAME=VALUE")
    client = connect(args.endpoint)
    experiment = client.create_experiment(args.experiment)  # gets it when it exists
    for old in find_recurring_runs(client, experiment.experiment_id, args.name):
        client.delete_recurring_run(old.recurring_run_id)
        print(f"replaced recurring run {old.display_name} ({old.recurring_run_id})")
    recurring = client.create_recurring_run(
        experiment_id=experiment.experiment_id, job_name=args.name,
        description=f"Retraining on new batches, cron '{args.cron}'",
        cron_expression=args.cron, max_concurrency=1, no_catchup=True,
        pipeline_package_path=str(args.pipeline), params=parameters, enabled=True)
    print(f"created recurring run {args.name} ({recurring.recurring_run_id}): enabled, "
          f"cron '{args.cron}', parameters {parameters}")
    return 0


def required_parameters(pipeline_file: Path) -> list[str]:
    """Pipeline parameters without a default."""
    import yaml

    spec = next(yaml.safe_load_all(Path(pipeline_file).read_text()))
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    return [name for name, value in parameters.items()
            if "defaultValue" not in value and not value.get("isOptional")]


def delete(args) -> int:
    client = connect(args.endpoint)
    try:
        experiment = client.get_experiment(experiment_name=args.experiment)
    except ValueError:
        print(f"no experiment {args.experiment}: no recurring run to delete")
        return 0
    runs = find_recurring_runs(client, experiment.experiment_id, args.name)
    for run in runs:
        client.delete_recurring_run(run.recurring_run_id)
        print(f"deleted recurring run {run.display_name} ({run.recurring_run_id})")
    if not runs:
        print(f"no recurring run named {args.name} in experiment {args.experiment}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", required=True)
    for command in ("create", "delete"):
        sub = commands.add_parser(command, allow_abbrev=False)
        sub.add_argument("--endpoint", required=True, help="KFP API endpoint")
        sub.add_argument("--experiment", default="rnn-classifier")
        sub.add_argument("--name", default=DEFAULT_NAME, help="the recurring run's name")
        if command == "create":
            sub.add_argument("--cron", required=True, type=check_cron,
                             help="six fields, seconds first: '0 0 6 * * *'")
            sub.add_argument("--pipeline", type=Path,
                             default=Path("build/retraining_pipeline.yaml"))
            sub.add_argument("--set", dest="settings", action="append", default=[],
                             metavar="NAME=VALUE", help="a pipeline parameter (repeatable)")
    args = parser.parse_args(argv)
    return create(args) if args.command == "create" else delete(args)


if __name__ == "__main__":
    sys.exit(main())
