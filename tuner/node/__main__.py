import sys

from tuner.node.python_policy import too_old

# before anything that needs a newer Python: a Jetson's system 3.10 gets one line, not a
# traceback from an import
_line = too_old()
if _line is not None:
    print(f"error: {_line}", file=sys.stderr)
    sys.exit(2)

from tuner.node.cli import main  # noqa: E402

sys.exit(main())
