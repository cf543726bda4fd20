import sys

from subbit.cli import main

sys.exit(main())
