from bench.peers.runner import main

raise SystemExit(main())
