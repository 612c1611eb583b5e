import sys

from lamar_hf.cli import main

sys.exit(main())
