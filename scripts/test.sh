#!/usr/bin/env bash
# The whole test suite: `npm test`. Installs what the tests need and is missing (Debian's
# nats-server, etcd-server, rabbitmq-server, openssl, chromium), builds (child-process tests run dist/cli.js as users do), type-checks the
# tests, then runs unit and integration tests with node's test runner.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests run for real: nats-server, etcd-server (the etcd registry), rabbitmq-server, openssl (test certificates), chromium
# (the status page, driven by playwright-core, which downloads no browser itself), and promtool
# (prometheus: `promtool check metrics` on a scrape) installed without its recommends.
missing=()
lean=()
command -v promtool >/dev/null 2>&1 || lean+=(prometheus)
if ! command -v nats-server >/dev/null 2>&1 && [ -z "${NATS_SERVER_BIN:-}" ]; then missing+=(nats-server); fi
if ! command -v etcd >/dev/null 2>&1 && [ -z "${ETCD_BIN:-}" ]; then missing+=(etcd-server); fi
if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ] && [ -z "${RABBITMQ_SERVER_BIN:-}" ]; then missing+=(rabbitmq-server); fi
# redis-server: the Redis broker's tests (test/support/redis.ts runs /usr/bin/redis-server).
if ! [ -x /usr/bin/redis-server ] && [ -z "${REDIS_SERVER_BIN:-}" ]; then missing+=(redis-server); fi
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# iproute2: the hosts tests (test/hosts/) build their hosts from network namespaces (they also need root, and say so when it is missing).
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
[ -x "${CHROMIUM_BIN:-/usr/bin/chromium}" ] || missing+=(chromium)
if [ $((${#missing[@]} + ${#lean[@]})) -gt 0 ]; then
  echo "installing Debian packages the tests need: ${missing[*]} ${lean[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  [ ${#missing[@]} -eq 0 ] || $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  # prometheus recommends a web console and exporters the tests do not need.
  [ ${#lean[@]} -eq 0 ] || $SUDO apt-get install -y -qq --no-install-recommends "${lean[@]}" >/dev/null
fi

npm run --silent build
npx tsc -p tsconfig.test.json
exec node --import tsx --test --test-timeout=120000 "$@" test/unit/*.test.ts test/integration/*.test.ts
