from framescope.cli import main

raise SystemExit(main())
