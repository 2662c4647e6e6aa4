from arctui.cli import main

raise SystemExit(main())
