"""Open Inference Protocol (KServe v2) REST routes and OpenAI /v1/embeddings over the model
repository of augury.predict.

    from augury.server.kserve import build_router, build_embeddings_router
    app.include_router(build_router(repository))
    app.include_router(build_embeddings_router(repository))
"""

from augury.server.kserve.embeddings import build_embeddings_router
from augury.server.kserve.routes import build_router, repository_lifespan

__all__ = ["build_embeddings_router", "build_router", "repository_lifespan"]
