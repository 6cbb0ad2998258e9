#!/bin/sh
# Create graphrunner's namespace once the server answers (as Temporal's own compose
# create-namespace.sh does); an existing namespace is left as it is.
set -eu
: "${TEMPORAL_ADDRESS:?set TEMPORAL_ADDRESS}" "${NAMESPACE:?set NAMESPACE}"
RETENTION=${NAMESPACE_RETENTION:-168h}
ATTEMPTS=${ATTEMPTS:-60}

tries=1
until temporal operator cluster health --address "$TEMPORAL_ADDRESS" >/dev/null 2>&1; do
  if [ "$tries" -ge "$ATTEMPTS" ]; then
    echo "Temporal at $TEMPORAL_ADDRESS is not healthy after $ATTEMPTS tries" >&2
    exit 1
  fi
  tries=$((tries + 1))
  sleep 2
done

tries=1
while :; do
  if temporal operator namespace describe -n "$NAMESPACE" --address "$TEMPORAL_ADDRESS" \
    >/dev/null 2>&1; then
    echo "namespace $NAMESPACE exists"
    break
  fi
  if temporal operator namespace create -n "$NAMESPACE" --retention "$RETENTION" \
    --address "$TEMPORAL_ADDRESS"; then
    echo "namespace $NAMESPACE created (retention $RETENTION)"
    break
  fi
  if [ "$tries" -ge "$ATTEMPTS" ]; then
    echo "cannot create namespace $NAMESPACE at $TEMPORAL_ADDRESS" >&2
    exit 1
  fi
  tries=$((tries + 1))
  sleep 2
done
