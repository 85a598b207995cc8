#!/usr/bin/env bash
# Build the Java client with the JDK alone (Java 11+): build/sidecar-client.jar.
#   ./build.sh          build the jar
#   ./build.sh test     also build and run the tests (needs the sidecar built: npm ci at the repo root)
set -euo pipefail
cd "$(dirname "$0")"
rm -rf build
javac --release 11 -d build/classes $(find src/main -name '*.java')
jar cf build/sidecar-client.jar -C build/classes .
echo "built build/sidecar-client.jar"
if [ "${1:-}" = "test" ]; then
  javac --release 11 -cp build/classes -d build/test-classes $(find src/test -name '*.java')
  java -cp build/classes:build/test-classes dev.sidecar.client.SidecarClientTest
fi
