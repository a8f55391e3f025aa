"""BentoML's server without its API layer: a plain Starlette route mounted with ``@bentoml.asgi_app``.

deploykit's service mounts its FastAPI app the same way, so this is the floor of that request path.
"""

import bentoml
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def predict(request):
    return JSONResponse({"predictions": []})


app = Starlette(routes=[Route("/predict", predict, methods=["POST"])])


@bentoml.service
@bentoml.asgi_app(app, path="/")
class Empty:
    pass
