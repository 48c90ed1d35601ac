#!/usr/bin/env bash
# The delta-spark jars of deploy/delta-spark/pom.xml into .jars/delta-spark, through Maven, checked
# against the pinned deploy/delta-spark/SHA256SUMS (a mismatch deletes them and fails). Without `mvn`
# it says so and leaves the Spark engine committing through delta-rs (docs/spark.md).
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.jars/delta-spark
sums=deploy/delta-spark/SHA256SUMS
if [ -d "$dest" ] && (cd "$dest" && sha256sum --quiet -c "../../$sums") 2>/dev/null; then
  exit 0  # already there, as pinned
fi
if ! command -v mvn >/dev/null; then
  echo "fetch-jars: no mvn here: the Spark engine will commit through delta-rs (install Maven and run $0 for delta-spark)" >&2
  exit 0
fi
rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
for attempt in 1 2 3; do  # Maven Central over a flaky link: try again before failing the set-up
  mvn -q -B -Dstyle.color=never -f deploy/delta-spark/pom.xml dependency:copy-dependencies \
    -DoutputDirectory="$PWD/$dest.tmp" > .jars/mvn.log 2>&1 && break
  [ "$attempt" -lt 3 ] || { tail -20 .jars/mvn.log >&2; echo "fetch-jars: Maven failed 3 times" >&2; exit 1; }
  sleep $((attempt * 10))
done
if ! (cd "$dest.tmp" && sha256sum --quiet -c "../../$sums" && [ "$(ls | wc -l)" -eq "$(wc -l < "../../$sums")" ]); then
  rm -rf "$dest.tmp"
  echo "fetch-jars: the jars Maven returned do not match $sums: not installed" >&2
  exit 1
fi
rm -rf "$dest" && mv "$dest.tmp" "$dest"
echo "fetch-jars: $(ls "$dest" | tr '\n' ' ')in $dest (sha256 as pinned)"
