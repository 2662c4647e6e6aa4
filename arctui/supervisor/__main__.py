from arctui.supervisor.supervise import main

raise SystemExit(main())
