#!/bin/sh
# Creates the secrets docker-compose.scale.yml and docker-stack.yml read, each a random
# 64-hex-digit value, unless it exists: docker/secrets/ (or $SCRAPERV4_SECRETS_DIR).
set -eu
dir=${SCRAPERV4_SECRETS_DIR:-"$(dirname "$0")/secrets"}
mkdir -p "$dir"
chmod 700 "$dir"
for name in api_token grafana_admin_password; do
  if [ ! -s "$dir/$name" ]; then
    # Readable by the containers' user (a bind mount keeps the mode); the directory is not.
    (umask 022 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$dir/$name")
    echo "created $dir/$name"
  fi
done
