# shellcheck shell=bash
# Shared by scripts/test, scripts/up and scripts/check (sourced, not run): bring a machine from "Debian with
# Python 3.11+" to "can run labmesh and its tests", idempotently and as fast as possible on the second run.
#
#   ensure_venv        .venv with `pip install -e '.[test]'` (redone when pyproject.toml or the package set changes)
#   ensure_node_tools  node_modules from package-lock.json (`npm ci`; redone when package*.json change)
#   ensure_postgres    PostgreSQL answering on 127.0.0.1:$LABMESH_PG_PORT (default 5432), apt-installed if needed
#   ensure_redis       Redis answering on 127.0.0.1:$LABMESH_REDIS_PORT (default 6379), apt-installed if needed
#
# Knobs: PYTHON (interpreter for the venv, default python3), LABMESH_PG_PORT, LABMESH_REDIS_PORT. When
# LABMESH_TEST_PG_URL / LABMESH_TEST_REDIS_URL are set, that server is the caller's business and is left alone;
# LABMESH_TEST_SKIP_PG=1 / LABMESH_TEST_SKIP_REDIS=1 skip it.

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 1

pg_port="${LABMESH_PG_PORT:-5432}"
redis_port="${LABMESH_REDIS_PORT:-6379}"
script_name="$(basename "$0")"

log() { printf '%s: %s\n' "$script_name" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# run_logged LOGFILE CMD...: run quietly; on failure show the end of the output and where the rest is.
run_logged() {
  local logfile="$1"; shift
  if ! "$@" >"$logfile" 2>&1; then
    log "failed: $*"
    tail -n 60 "$logfile" >&2
    log "full output: $logfile"
    return 1
  fi
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
    die "need root (or sudo) to run: $*"
  fi
}

_apt_updated=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "cannot install $* (no apt-get); install it and re-run"
  local logfile; logfile="$(mktemp -t labmesh-apt.XXXXXX)"
  if [ "$_apt_updated" = 0 ]; then
    log "apt-get update"
    run_logged "$logfile" as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    _apt_updated=1
  fi
  log "apt-get install $*"
  run_logged "$logfile" as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
  rm -f "$logfile"
}

# wait_until SECONDS WHAT CMD...: poll CMD every 0.2 s.
wait_until() {
  local seconds="$1" what="$2"; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || die "$what did not come up within ${seconds}s"
    sleep 0.2
  done
}

elapsed() { printf '%ss' "$((SECONDS - $1))"; }

# ------------------------------------------------------------------------------------------------ Python venv

venv_fingerprint() {
  # What the editable install depends on: the project metadata and the set of packages setuptools finds.
  {
    cat pyproject.toml
    "$1" -c 'import sys; print(sys.version)'
    find . -maxdepth 3 -name __init__.py -not -path './.venv/*' -not -path './node_modules/*' | LC_ALL=C sort
  } | sha256sum | cut -d' ' -f1
}

ensure_venv() {
  local python="${PYTHON:-python3}" started=$SECONDS
  command -v "$python" >/dev/null 2>&1 || die "$python not found: labmesh needs Python 3.11+"
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "$python is $("$python" -V 2>&1); labmesh needs Python 3.11+ (set PYTHON=...)"
  if [ -d .venv ] && ! .venv/bin/python -c 'import sys' >/dev/null 2>&1; then
    log "removing broken .venv"
    rm -rf .venv
  fi
  if [ ! -d .venv ]; then
    log "creating .venv ($("$python" -V 2>&1))"
    if ! "$python" -m venv .venv >/dev/null 2>&1; then
      rm -rf .venv  # Debian's python3 without python3-venv leaves a venv without pip behind
      apt_install python3-venv
      "$python" -m venv .venv
    fi
  fi
  local stamp=.venv/.labmesh-install fingerprint
  fingerprint="$(venv_fingerprint .venv/bin/python)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$fingerprint" ]; then
    log "pip install -e '.[test]' into .venv (log: .venv/pip-install.log)"
    run_logged .venv/pip-install.log .venv/bin/python -m pip install --disable-pip-version-check -e '.[test]'
    echo "$fingerprint" >"$stamp"
    log "Python environment ready ($(elapsed "$started"))"
  fi
}

# ------------------------------------------------------------------------------------------------- Node tools

ensure_node_tools() {
  local started=$SECONDS
  if ! command -v npm >/dev/null 2>&1; then
    if command -v node >/dev/null 2>&1; then apt_install npm; else apt_install nodejs npm; fi
  fi
  local stamp=node_modules/.labmesh-install fingerprint
  fingerprint="$(cat package.json package-lock.json 2>/dev/null | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$fingerprint" ] || [ ! -x node_modules/.bin/buf ]; then
    local logfile; logfile="$(mktemp -t labmesh-npm.XXXXXX)"
    if [ -f package-lock.json ]; then
      log "npm ci (buf, grpc-js, proto-loader)"
      run_logged "$logfile" npm ci --no-audit --no-fund
    else
      log "npm install (no package-lock.json yet)"
      run_logged "$logfile" npm install --no-audit --no-fund
    fi
    rm -f "$logfile"
    [ -x node_modules/.bin/buf ] || die "node_modules/.bin/buf missing after npm install"
    echo "$fingerprint" >"$stamp"
    log "Node tools ready ($(elapsed "$started"))"
  fi
}

# ------------------------------------------------------------------------------------------------- PostgreSQL

tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

pg_up() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h 127.0.0.1 -p "$pg_port" -t 2
  else
    tcp_open 127.0.0.1 "$pg_port"
  fi
}

pg_cluster_status() {  # VERSION CLUSTER -> "online", "down", or nothing when there is no such cluster
  pg_lsclusters -h 2>/dev/null | awk -v v="$1" -v c="$2" '$1 == v && $2 == c { print $4 }'
}

# Only for a cluster this script created: listen on the loopback at $pg_port and trust loopback connections, so
# the tests can connect as postgres without a password.
pg_configure_test_cluster() {
  local version="$1" cluster="$2"
  local conf="/etc/postgresql/$version/$cluster"
  local hba="$conf/pg_hba.conf" tmp
  tmp="$(mktemp -t labmesh-pgconf.XXXXXX)"
  {
    echo "# labmesh scripts/test: settings of a cluster created for the tests (conf.d is read after postgresql.conf)."
    echo "port = $pg_port"
    echo "listen_addresses = '127.0.0.1'"
    if [ "$cluster" = labmesh ]; then  # a throwaway cluster: trade durability for speed
      echo "fsync = off"
      echo "synchronous_commit = off"
      echo "full_page_writes = off"
    fi
  } >"$tmp"
  as_root mkdir -p "$conf/conf.d"
  as_root cp "$tmp" "$conf/conf.d/zz-labmesh-test.conf"
  as_root chmod 644 "$conf/conf.d/zz-labmesh-test.conf"
  grep -q "^include_dir = 'conf.d'" "$conf/postgresql.conf" ||
    echo "include_dir = 'conf.d'" | as_root tee -a "$conf/postgresql.conf" >/dev/null
  if ! grep -q '^# labmesh scripts/test' "$hba"; then
    {
      echo "# labmesh scripts/test: this cluster was created for the tests; trust loopback connections."
      echo "host    all    all    127.0.0.1/32    trust"
      echo "host    all    all    ::1/128         trust"
      cat "$hba"
    } >"$tmp"
    as_root cp "$tmp" "$hba"  # onto the existing file: keeps its owner (postgres) and mode
  fi
  rm -f "$tmp"
}

ensure_postgres() {
  if [ "${LABMESH_TEST_SKIP_PG:-}" = 1 ] || [ -n "${LABMESH_TEST_PG_URL:-}" ]; then
    return 0
  fi
  export LABMESH_TEST_PG_URL="postgresql://postgres@127.0.0.1:$pg_port/postgres"
  if pg_up; then
    return 0
  fi
  local started=$SECONDS installed=0
  log "no PostgreSQL on 127.0.0.1:$pg_port"
  if ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || ! command -v pg_ctlcluster >/dev/null 2>&1; then
    apt_install postgresql
    installed=1
  fi
  local version cluster=labmesh created=0
  version="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)"
  if [ "$installed" = 1 ] && [ -n "$(pg_cluster_status "$version" main)" ]; then
    cluster=main  # Debian's postinst just created it for us: it is ours to configure
    created=1
  elif [ -z "$(pg_cluster_status "$version" "$cluster")" ]; then
    log "creating PostgreSQL $version cluster '$cluster'"
    local logfile; logfile="$(mktemp -t labmesh-pg.XXXXXX)"
    run_logged "$logfile" as_root pg_createcluster --port "$pg_port" "$version" "$cluster"
    rm -f "$logfile"
    created=1
  fi
  if [ "$created" = 1 ] || [ "$cluster" = labmesh ]; then
    pg_configure_test_cluster "$version" "$cluster"
  fi
  log "starting PostgreSQL $version/$cluster on 127.0.0.1:$pg_port"
  if [ "$(pg_cluster_status "$version" "$cluster")" = online ]; then
    as_root pg_ctlcluster "$version" "$cluster" restart
  else
    as_root pg_ctlcluster "$version" "$cluster" start
  fi
  wait_until 60 "PostgreSQL on 127.0.0.1:$pg_port" pg_up
  log "PostgreSQL ready ($(elapsed "$started"))"
}

# ------------------------------------------------------------------------------------------------------ Redis

redis_up() {
  if command -v redis-cli >/dev/null 2>&1; then
    [ "$(redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null)" = PONG ]
  else
    (
      exec 3<>"/dev/tcp/127.0.0.1/$redis_port" || exit 1
      printf 'PING\r\n' >&3
      IFS= read -r -t 2 reply <&3 || exit 1
      [[ "$reply" == +PONG* ]]
    ) 2>/dev/null
  fi
}

ensure_redis() {
  if [ "${LABMESH_TEST_SKIP_REDIS:-}" = 1 ] || [ -n "${LABMESH_TEST_REDIS_URL:-}" ]; then
    return 0
  fi
  export LABMESH_TEST_REDIS_URL="redis://127.0.0.1:$redis_port/0"
  if redis_up; then
    return 0
  fi
  local started=$SECONDS
  log "no Redis on 127.0.0.1:$redis_port"
  if ! command -v redis-server >/dev/null 2>&1; then
    apt_install redis-server
    if redis_up; then  # the package's service started it
      log "Redis ready ($(elapsed "$started"))"
      return 0
    fi
  fi
  log "starting redis-server on 127.0.0.1:$redis_port (no persistence)"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
    --dir /tmp --logfile "/tmp/labmesh-redis-$redis_port.log" --pidfile "/tmp/labmesh-redis-$redis_port.pid"
  wait_until 30 "Redis on 127.0.0.1:$redis_port (log: /tmp/labmesh-redis-$redis_port.log)" redis_up
  log "Redis ready ($(elapsed "$started"))"
}
