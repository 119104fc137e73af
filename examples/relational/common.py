"""Command-line options shared by the relational examples."""
import argparse


def parse(description, small, large):
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--large", action="store_true", help=f"large size ({large})")
    ap.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb")
    ap.add_argument("--database", help="DuckDB database file (default: in memory)")
    ap.add_argument("--memory-limit", default="4GB", help="DuckDB memory limit")
    ap.add_argument("--steps", type=int, default=None)
    args = ap.parse_args()
    args.size = large if args.large else small
    return args


def connect(R, args):
    if args.engine == "spark":
        return R.connect("spark")
    return R.connect(args.database, memory_limit=args.memory_limit)
