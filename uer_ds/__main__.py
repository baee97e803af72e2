import sys

from uer_ds.cli import main

sys.exit(main())
