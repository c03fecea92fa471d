import sys

from tuner.node.cli import main

sys.exit(main())
