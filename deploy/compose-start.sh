#!/bin/sh
# The proxy's start command under docker compose (docker-compose.yml).
#
# With the redis profile on, the `redis` service is on the compose network: use it as the
# shared store (CACHE_URL) unless .env names one. Without it, the name never resolves and the
# workers share the embedded store. Compose starts both containers together, so the name is
# given a few seconds to appear.
if [ -z "${CACHE_URL}" ] && [ -n "${COMPOSE_REDIS_URL}" ]; then
    host=$(printf '%s' "${COMPOSE_REDIS_URL}" | sed -e 's|^[a-z]*://||' -e 's|^[^@]*@||' -e 's|[:/].*$||')
    tries=${COMPOSE_REDIS_WAIT:-5}
    while [ "${tries}" -gt 0 ]; do
        if getent hosts "${host}" >/dev/null 2>&1; then
            CACHE_URL="${COMPOSE_REDIS_URL}"
            export CACHE_URL
            echo "compose-start: shared store at ${host} (the redis profile is on)"
            break
        fi
        tries=$((tries - 1))
        [ "${tries}" -gt 0 ] && sleep 1
    done
    [ -z "${CACHE_URL}" ] && echo "compose-start: no ${host} service: embedded shared store"
fi
exec gunicorn -c gunicorn.conf.py wsgi:app
