"""Checks `make upload` and `make submit` run before the kfp CLI: is the API there, is the pipeline.

    python -m pipelines.kfp_endpoint check URL
    python -m pipelines.kfp_endpoint has-pipeline URL NAME

The kfp CLI meets an unreachable endpoint with three urllib3 retry warnings
and a traceback; `check` says it in one line instead (exit 2). `has-pipeline`
exits 0 when a pipeline of that display name exists and 1 when not, so
`make upload` adds a version to an existing pipeline and creates it the
first time, without a failed command in between. Both connect the way the
kfp CLI does (kfp.Client), so the same credentials apply.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys

EXIT_UNREACHABLE = 2


def connect(endpoint: str):
    """A kfp.Client for `endpoint`, its start-up chatter silenced; SystemExit(2) if unreachable."""
    import warnings

    from kfp import Client

    logging.disable(logging.WARNING)  # urllib3's retry warnings, "Failed to load kube config"
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            return Client(host=endpoint)
    except Exception as error:  # noqa: BLE001  the client raises whatever urllib3 raised
        reason = " ".join(str(error).split())
        if len(reason) > 200:
            reason = reason[:200] + "..."
        print(f"error: cannot reach the Kubeflow Pipelines API at {endpoint} ({reason}); set "
              "KFP_ENDPOINT to its address, e.g. after `kubectl port-forward -n kubeflow "
              "svc/ml-pipeline-ui 8080:80` use http://localhost:8080", file=sys.stderr)
        raise SystemExit(EXIT_UNREACHABLE) from None
    finally:
        logging.disable(logging.NOTSET)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="exit 2 with one line if the API cannot be reached"
                        ).add_argument("endpoint")
    has = commands.add_parser("has-pipeline", help="exit 0 if the pipeline exists, 1 if not")
    has.add_argument("endpoint")
    has.add_argument("name")
    args = parser.parse_args(argv)
    client = connect(args.endpoint)
    if args.command == "check":
        return 0
    return 0 if client.get_pipeline_id(name=args.name) else 1


if __name__ == "__main__":
    sys.exit(main())
