import sys

from lanon.cli.main import main

sys.exit(main())
