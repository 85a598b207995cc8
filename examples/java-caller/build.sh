#!/usr/bin/env bash
# Compile the Java caller with the client's sources (JDK only): build/Caller.class.
set -euo pipefail
cd "$(dirname "$0")"
rm -rf build
javac --release 11 -d build $(find ../../clients/java/src/main -name '*.java') Caller.java
