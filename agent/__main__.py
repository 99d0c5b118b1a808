"""python -m pj.agent: the same as pj-agent."""

from .main import main

raise SystemExit(main())
