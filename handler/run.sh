#!/bin/bash
# The Lambda function's Handler. AWS Lambda Web Adapter's /opt/bootstrap (the
# AWS_LAMBDA_EXEC_WRAPPER) execs "$LAMBDA_TASK_ROOT/$_HANDLER", i.e. this file,
# once per cold start; the adapter then waits for GET $AWS_LWA_READINESS_CHECK_PATH
# to answer and forwards every invocation to this server as a plain HTTP request.
# So the ASGI lifespan (the DynamoDB client) runs once per instance, not per request.
set -euo pipefail

# The bundle root (/var/task in Lambda) holds the handler package and its
# dependencies side by side; `python -m` from there finds both.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

# Loopback only: nothing but the adapter, in the same sandbox, should reach it.
exec python3 -m handler.cli serve --host 127.0.0.1 --port "${AWS_LWA_PORT:-${PORT:-8080}}"
