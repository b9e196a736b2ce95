#!/usr/bin/env bash
# Smoke test of a deployed stack's API: health, a usage query with the stack's own credentials
# (and its refusal without them), the latest price. Needs the AWS CLI with credentials, curl and
# python3.   infra/smoke_test.sh STACK_NAME   (region from AWS_REGION / the CLI's configuration)
set -euo pipefail
stack="${1:?usage: infra/smoke_test.sh STACK_NAME}"

output() {
  aws cloudformation describe-stacks --stack-name "$stack" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
fail() { echo "smoke test: $*" >&2; exit 1; }

api="$(output ApiUrl)"
secret="$(output ApiCredentialsSecretArn)"
if [ -z "$api" ] || [ "$api" = None ]; then fail "stack $stack has no ApiUrl output"; fi
echo "API: $api"

# /health, retried for a minute: a fresh stage can take a moment to answer.
for attempt in $(seq 1 12); do
  if body="$(curl -fsS --max-time 10 "$api/health")"; then break; fi
  [ "$attempt" = 12 ] && fail "GET /health never answered 2xx"
  sleep 5
done
[ "$(json_field status <<<"$body")" = ok ] || fail "GET /health answered $body"
echo "GET /health: $body"

credentials="$(aws secretsmanager get-secret-value --secret-id "$secret" --query SecretString --output text)"
username="$(json_field username <<<"$credentials")"
password="$(json_field password <<<"$credentials")"
if [ -n "${GITHUB_ACTIONS:-}" ]; then echo "::add-mask::$password"; fi

query="msisdn=6577353690711&start_time=20240101000000&end_time=20240101235959"
status="$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$api/data_usage?$query")"
[ "$status" = 401 ] || fail "GET /data_usage without credentials answered $status, not 401"
echo "GET /data_usage without credentials: 401"
# The credentials go to curl on its standard input, not on its command line.
body="$(curl -fsS --max-time 10 -K - "$api/data_usage?$query" <<<"user = \"$username:$password\"")" ||
  fail "GET /data_usage with the stack's credentials failed"
[ "$(json_field msisdn <<<"$body")" = 6577353690711 ] || fail "GET /data_usage answered $body"
python3 -c 'import json, sys; assert isinstance(json.load(sys.stdin)["usage"], list)' <<<"$body" ||
  fail "GET /data_usage has no usage list: $body"
echo "GET /data_usage: 200, $(python3 -c 'import json, sys; print(len(json.load(sys.stdin)["usage"]))' <<<"$body") usage items"

# A new stack may have no price yet (markets closed): 404 for the symbol is an answer, 5xx is not.
status="$(curl -s -o /tmp/latest_price.json -w '%{http_code}' --max-time 10 "$api/latest_price?symbol=EURUSD%3DX")"
case "$status" in
  200 | 404) python3 -c 'import json, sys; json.load(open(sys.argv[1]))' /tmp/latest_price.json ||
    fail "GET /latest_price answered $status without JSON" ;;
  *) fail "GET /latest_price answered $status: $(cat /tmp/latest_price.json)" ;;
esac
echo "GET /latest_price?symbol=EURUSD=X: $status $(cat /tmp/latest_price.json)"
echo "smoke test of $stack passed"
