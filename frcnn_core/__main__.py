from frcnn_core.cli import main

raise SystemExit(main())
