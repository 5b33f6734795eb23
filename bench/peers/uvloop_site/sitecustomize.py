"""For bench/gateway_vs_direct.py --gateway-uvloop only: the gateway process (and no other)
on uvloop's event loop, without a change to driftloop's code or dependencies.

Python imports `sitecustomize` from the path at start-up; the benchmark puts this folder
and a folder holding uvloop (`uv pip install --target DIR uvloop`) on the PYTHONPATH of the
processes it starts, and this module sets uvloop's loop policy in the one whose command is
`python -m driftloop.gateway`, so the kit's `asyncio.run` runs the gateway on uvloop. The
gateway's log starts with a line saying so.
"""

import sys

if "driftloop.gateway" in sys.orig_argv:
    import asyncio

    import uvloop  # type: ignore[import-not-found]  # no dependency: from PYTHONPATH

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    print(f"gateway on uvloop {uvloop.__version__}", file=sys.stderr, flush=True)
