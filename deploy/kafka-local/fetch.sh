#!/usr/bin/env bash
# Put the broker's jars in $KAFKA_LOCAL_HOME/lib with Maven; a no-op while pom.xml is unchanged.
set -euo pipefail
# shellcheck source=env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

pom=$kafka_here/pom.xml
hash=$(sha256sum "$pom" | cut -d' ' -f1)
if [[ $(cat "$KAFKA_LIB/.pom.sha256" 2>/dev/null) == "$hash" ]]; then
  exit 0
fi
echo "kafka-local: fetching jars into $KAFKA_LIB" >&2
mkdir -p "$KAFKA_LOCAL_HOME"
tmp=$(mktemp -d "$KAFKA_LOCAL_HOME/lib.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
if ! mvn -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
  -DoutputDirectory="$tmp/lib" -Dproject.build.directory="$tmp/target" >"$tmp/mvn.log" 2>&1; then
  tail -n 40 "$tmp/mvn.log" >&2
  exit 1
fi
echo "$hash" >"$tmp/lib/.pom.sha256"
rm -rf "$KAFKA_LIB"
mv "$tmp/lib" "$KAFKA_LIB"
echo "kafka-local: $(find "$KAFKA_LIB" -name '*.jar' | wc -l) jars in $KAFKA_LIB" >&2
