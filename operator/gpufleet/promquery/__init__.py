"""One Prometheus reader for the router and the operator.

``series`` (pure) names the queries and maps result series to their owners (an
endpoint, a pod) by label; ``client`` (I/O) runs instant queries through
prometheus-api-client with the TLS options of ``PrometheusSource.tls``. Both the
router's signal loop and the operator's autoscaler read Prometheus only through here.
"""
