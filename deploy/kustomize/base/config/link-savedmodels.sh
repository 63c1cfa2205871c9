#!/bin/sh
# TF Serving wants <base>/<version>/saved_model.pb; the repository has <model>/<version>/model.savedmodel/.
# Links every SavedModel version of each model in $TFS_MODELS so TF Serving serves the same version numbers.
set -eu
for model in $TFS_MODELS; do
    mkdir -p "/tfs/$model"
    for dir in "/models/$model"/*/; do
        version=$(basename "$dir")
        if [ -f "$dir/model.savedmodel/saved_model.pb" ]; then
            ln -sfn "$dir/model.savedmodel" "/tfs/$model/$version"
        fi
    done
done
