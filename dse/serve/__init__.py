"""`dse serve`: one index served over HTTP (JSON API, web page) and MCP, safe under concurrent use.

`dse.serve.app.create_app(config)` builds the FastAPI application; `dse.serve.service.Service`
holds what it shares across requests (one `Retriever`, the query batcher, the indexing jobs, the
refresher); `dse.serve.client.Client` is its Python client (also `dse.Client`). FastAPI, uvicorn
and the MCP SDK are imported only by the modules that need them.
"""

from dse.serve.client import Client, RemoteError

__all__ = ["Client", "RemoteError"]
