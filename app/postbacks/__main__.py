import sys

from app.postbacks.worker import main

sys.exit(main())
