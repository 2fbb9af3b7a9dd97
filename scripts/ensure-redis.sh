#!/usr/bin/env bash
# Makes sure `redis-server` and `redis-cli` are installed (the outage and
# cluster tests start servers of their own) and that Redis answers on
# 127.0.0.1:6379: installs from the system's packages when missing, starts it
# when not running.
set -euo pipefail

ping() { (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && head -c 5 <&3 | grep -q PONG) 2>/dev/null; }

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  echo "Redis is not installed; installing redis-server and redis-tools" >&2
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server redis-tools >/dev/null
fi

ping && exit 0

echo "starting redis-server on 127.0.0.1:6379" >&2
mkdir -p /tmp/bitbylaw-redis
redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
  --dir /tmp/bitbylaw-redis --logfile /tmp/bitbylaw-redis/redis.log

for _ in $(seq 1 100); do
  ping && exit 0
  sleep 0.1
done
echo "Redis did not come up on 127.0.0.1:6379 (see /tmp/bitbylaw-redis/redis.log)" >&2
exit 1
