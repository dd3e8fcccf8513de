import os

import redis
from cachelib import RedisCache
from flask import Flask

app = Flask(__name__)

# A client you configure yourself: a password, a timeout, TLS...
client = redis.Redis(
    host=os.environ.get("REDIS_HOST", "localhost"),
    port=int(os.environ.get("REDIS_PORT", "6379")),
    socket_timeout=1,
    socket_connect_timeout=1,
)
app.config["POW_CACHE"] = RedisCache(host=client)

# Redis Cluster: the same, with a cluster client.
cluster = redis.RedisCluster(
    host=os.environ.get("REDIS_CLUSTER_HOST", "localhost"),
    port=int(os.environ.get("REDIS_CLUSTER_PORT", "7000")),
    socket_timeout=1,
)
app.config["POW_CACHE"] = RedisCache(host=cluster)
