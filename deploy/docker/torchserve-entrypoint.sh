#!/bin/sh
# Packages each model named in TS_MODELS (space-separated) from the model repository into a .mar with
# modelgate's handler, then runs TorchServe in the foreground serving them under the same names.
set -eu
repo="${MODELGATE_MODEL_REPOSITORY:-/models}"
store="${TS_MODEL_STORE:-/tmp/model-store}"
mkdir -p "$store" "${LOG_LOCATION:-/tmp/logs}"
models=""
for model in ${TS_MODELS:?set TS_MODELS to the repository models TorchServe should serve}; do
    mar=$(modelgate torchserve-package --model-repository "$repo" --model "$model" --export-path "$store")
    models="$models $model=$(basename "$mar")"
done
# shellcheck disable=SC2086  # one argument per model
exec torchserve --foreground --ncs --disable-token-auth --enable-model-api \
    --ts-config "${TS_CONFIG:-/etc/torchserve/config.properties}" --model-store "$store" --models $models
