import sys

from concord.infra.cli import main

sys.exit(main())
