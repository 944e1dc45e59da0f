"""Scale out on Ray Serve: each LLM engine and each predictive model as a deployment of N
replicas behind one ingress running the usual FastAPI app.

    config.py          ScaleConfig (replicas or autoscaling bounds), `require_ray`
    load.py            per-replica load reports and the board that collects them
    replicas.py        the replica classes: an LLM engine, a predictive model
    llm_client.py      RayEngineClient: the server's EngineClient over a deployment handle
    predict_client.py  the repository's batch call forwarded to a model's deployment
    observe.py         per-replica Prometheus gauges and the /api/replicas route
    app.py             the Serve application (ingress + deployments) and `serve_on_ray`

Only config.py imports nothing from ray: the others are imported once `require_ray()` passed,
so the package works without the optional `ray` extra.
"""
