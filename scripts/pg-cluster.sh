#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for manual runs, benchmarks and docs: trust authentication and fsync off, so
# never for data you want to keep. The tests start their own (tests/Shepherd.Testing/PostgresCluster.cs).
set -euo pipefail

usage() {
    cat >&2 <<'EOF'
usage: scripts/pg-cluster.sh start DIR [PORT]   initialise (once) and start a cluster in DIR, listening on
                                                127.0.0.1:PORT (default 55432), with a database "shepherd";
                                                prints its connection string
       scripts/pg-cluster.sh stop DIR           stop the cluster in DIR (delete DIR yourself to discard it)

Binaries come from $SHEPHERD_PG_BIN, else pg_config --bindir, else the newest /usr/lib/postgresql/*/bin.
Run as root, the cluster belongs to and runs as the "postgres" user (or "nobody"): PostgreSQL refuses root.
EOF
    exit 2
}

die() {
    echo "pg-cluster: $*" >&2
    exit 1
}

find_bin() {
    if [[ -n "${SHEPHERD_PG_BIN:-}" ]]; then
        echo "$SHEPHERD_PG_BIN"
        return
    fi
    local dir
    if command -v pg_config >/dev/null && dir=$(pg_config --bindir) && [[ -x "$dir/initdb" ]]; then
        echo "$dir"
        return
    fi
    for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5,5 -V -r); do
        if [[ -x "$dir/initdb" ]]; then
            echo "$dir"
            return
        fi
    done
    die "PostgreSQL is not installed: no initdb in \$SHEPHERD_PG_BIN, pg_config --bindir or /usr/lib/postgresql/*/bin"
}

# Runs a PostgreSQL tool as the cluster's owner.
as_owner() {
    if [[ -n "$owner" ]]; then
        runuser -u "$owner" -- "$@"
    else
        "$@"
    fi
}

[[ $# -ge 2 ]] || usage
command=$1
[[ $command != start ]] || mkdir -p "$2"
[[ -d "$2" ]] || die "$2 is not a folder"
dir=$(cd "$2" && pwd)
data=$dir/data
bin=$(find_bin)
[[ -x "$bin/initdb" ]] || die "$bin holds no initdb; check SHEPHERD_PG_BIN"

owner=
if [[ $(id -u) == 0 ]]; then
    owner=postgres
    id -u postgres >/dev/null 2>&1 || owner=nobody
fi
# The tools resolve the working directory, which the owner may not be allowed to enter.
cd "$dir"

case $command in
start)
    [[ $# -le 3 ]] || usage
    port=${3:-55432}
    [[ $port =~ ^[0-9]+$ ]] || usage
    if [[ -n "$owner" ]]; then
        chown "$owner" "$dir"
        as_owner test -w "$dir" -a -x "$dir" || die "$owner cannot reach $dir; pick a folder it can enter, e.g. under /tmp"
    fi
    if [[ ! -f "$data/PG_VERSION" ]]; then
        as_owner "$bin/initdb" -D "$data" -A trust -U shepherd --no-sync -E UTF8 --locale=C >"$dir/initdb.log" \
            || die "initdb failed; see $dir/initdb.log"
    fi
    if as_owner "$bin/pg_ctl" status -D "$data" >/dev/null; then
        # Already running, perhaps on another port: report the port it listens on.
        port=$(sed -n 4p "$data/postmaster.pid")
    else
        as_owner "$bin/pg_ctl" start -D "$data" -l "$dir/server.log" -w -t 60 -o "-c listen_addresses=127.0.0.1 -p $port \
            -c unix_socket_directories='$dir' -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
            -c max_connections=300 -c shared_buffers=128MB" >/dev/null \
            || die "the server did not start; the end of $dir/server.log:"$'\n'"$(tail -n 20 "$dir/server.log")"
    fi
    psql=("$bin/psql" -X -q -v ON_ERROR_STOP=1 "host=127.0.0.1 port=$port user=shepherd dbname=postgres")
    if [[ -z $("${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = 'shepherd'") ]]; then
        "${psql[@]}" -c "CREATE DATABASE shepherd"
    fi
    echo "Host=127.0.0.1;Port=$port;Username=shepherd;Database=shepherd"
    ;;
stop)
    [[ $# -eq 2 ]] || usage
    [[ -f "$data/PG_VERSION" ]] || die "$dir holds no cluster"
    if as_owner "$bin/pg_ctl" status -D "$data" >/dev/null; then
        as_owner "$bin/pg_ctl" stop -D "$data" -m fast -w >/dev/null
        echo "stopped the cluster in $dir"
    else
        echo "the cluster in $dir is not running"
    fi
    ;;
*)
    usage
    ;;
esac
