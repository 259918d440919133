from mbxtui.cli import main

raise SystemExit(main())
