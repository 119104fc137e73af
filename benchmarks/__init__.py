"""Core benchmark suite: chainrule against the peers a user would pick instead.

Run everything with ``python -m benchmarks.run``; see ``benchmarks/README.md``.
"""
