#!/usr/bin/env bash
# Fetches the local stack's real servers, pinned, into infra/.cache (ignored by git).
# Idempotent: a second run with everything in place does nothing.
set -euo pipefail

LIVEKIT_SERVER_VERSION=v1.13.5     # later tags carry `replace` directives that break `go install`
DYNAMODB_LOCAL_VERSION=2.6.1       # com.amazonaws:DynamoDBLocal on Maven Central
TOXIPROXY_VERSION=v2.12.0          # github.com/Shopify/toxiproxy/v2 (fault injection in tests)

here="$(cd "$(dirname "$0")" && pwd)"
cache="$here/.cache"
mkdir -p "$cache/bin"

if ! "$cache/bin/livekit-server" --version 2>/dev/null | grep -q "${LIVEKIT_SERVER_VERSION#v}"; then
  echo "fetch: livekit-server $LIVEKIT_SERVER_VERSION (go install, a few minutes the first time)"
  tmp="$(mktemp -d)"
  GOBIN="$tmp" GOFLAGS=-modcacherw go install "github.com/livekit/livekit-server/cmd/server@$LIVEKIT_SERVER_VERSION"
  mv "$tmp/server" "$cache/bin/livekit-server"
  rm -rf "$tmp"
fi

ddb="$cache/dynamodb-$DYNAMODB_LOCAL_VERSION"
if [ ! -f "$ddb/lib/DynamoDBLocal-$DYNAMODB_LOCAL_VERSION.jar" ]; then
  echo "fetch: DynamoDB Local $DYNAMODB_LOCAL_VERSION (Maven Central)"
  rm -rf "$ddb.tmp"
  mvn -q -B -f "$here/dynamodb/pom.xml" -Ddynamodb.local.version="$DYNAMODB_LOCAL_VERSION" \
    dependency:copy-dependencies -DoutputDirectory="$ddb.tmp/lib"
  mv "$ddb.tmp" "$ddb"
fi
ln -sfn "dynamodb-$DYNAMODB_LOCAL_VERSION" "$cache/dynamodb"

if ! "$cache/bin/toxiproxy-server" --version 2>/dev/null | grep -q "${TOXIPROXY_VERSION#v}"; then
  echo "fetch: toxiproxy $TOXIPROXY_VERSION (go install)"
  tmp="$(mktemp -d)"
  GOBIN="$tmp" GOFLAGS=-modcacherw go install \
    -ldflags "-X github.com/Shopify/toxiproxy/v2.Version=${TOXIPROXY_VERSION#v}" \
    "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION"
  mv "$tmp/server" "$cache/bin/toxiproxy-server"
  rm -rf "$tmp"
fi
echo "fetch: livekit-server $LIVEKIT_SERVER_VERSION, DynamoDB Local $DYNAMODB_LOCAL_VERSION, toxiproxy $TOXIPROXY_VERSION in infra/.cache"
