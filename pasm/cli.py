"""The `pasm` command: small tools around a run's artifacts."""

from __future__ import annotations

import argparse
import sys

from pasm.summary import collect, format_table


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `pasm` console script."""
    parser = argparse.ArgumentParser(prog="pasm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    summary = sub.add_parser("summary", help="accuracy per round and split of results/<dataset>")
    summary.add_argument("dataset_dir", help="e.g. results/demo")
    args = parser.parse_args(argv)
    if args.command == "summary":
        rows = collect(args.dataset_dir)
        if not rows:
            print(f"no metrics.json under {args.dataset_dir}/round*/", file=sys.stderr)
            return 1
        print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
