#!/usr/bin/env bash
# The whole test suite: `npm test`. Installs what the tests need and is missing (Debian's
# nats-server), builds (child-process tests run dist/cli.js as users do), type-checks the
# tests, then runs unit and integration tests with node's test runner.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nats-server >/dev/null 2>&1 && [ -z "${NATS_SERVER_BIN:-}" ]; then
  echo "nats-server not found: installing Debian's nats-server package" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq nats-server >/dev/null
fi

npm run --silent build
npx tsc -p tsconfig.test.json
exec node --import tsx --test --test-timeout=120000 "$@" test/unit/*.test.ts test/integration/*.test.ts
