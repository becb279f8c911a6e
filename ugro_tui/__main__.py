from ugro_tui.cli import main

raise SystemExit(main())
