import sys

from siopg.supervisor import main

sys.exit(main())
