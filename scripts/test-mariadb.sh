#!/bin/sh
# test-mariadb.sh - a throwaway MariaDB server for tests, on loopback only.
#
#   scripts/test-mariadb.sh start DATADIR PORT   initialise DATADIR unless it holds a database,
#                                                server on 127.0.0.1:PORT, user movie/movie
#                                                with ALL PRIVILEGES
#   scripts/test-mariadb.sh start-free DATADIR FIRST_PORT
#                                                the same on the first port from FIRST_PORT
#                                                that can be bound (up to 20 tried); a start
#                                                that fails (another process took the port
#                                                meanwhile) moves on to the next; prints the port
#   scripts/test-mariadb.sh stop DATADIR         shut it down (bounded wait, then kill)
#
# Prints nothing but errors. Exit 0 on success. The socket and pid file live in
# DATADIR, so several instances (different DATADIR and PORT) can run at once.
# Needs the Debian package mariadb-server; package scripts never start it here.
set -eu

usage() {
	echo "usage: $0 start DATADIR PORT | start-free DATADIR FIRST_PORT | stop DATADIR" >&2
	exit 2
}

admin() {
	# $1 = datadir; rest = mariadb-admin arguments. Uses the socket: root is
	# authenticated by unix_socket there, with no password.
	d=$1
	shift
	mariadb-admin --no-defaults --protocol=socket --socket="$d/sock" -uroot \
		--connect-timeout=2 "$@"
}

start() {
	datadir=$1
	port=$2
	case $port in
	'' | *[!0-9]*) echo "test-mariadb: bad port '$port'" >&2; exit 2 ;;
	esac
	if [ "$port" -lt 1024 ] || [ "$port" -ge 32768 ]; then
		echo "test-mariadb: port $port outside 1024..32767" >&2
		exit 2
	fi
	if [ -e "$datadir/pid" ] && kill -0 "$(cat "$datadir/pid")" 2>/dev/null; then
		echo "test-mariadb: a server already runs on $datadir" >&2
		exit 1
	fi
	mkdir -p "$datadir"
	datadir=$(cd "$datadir" && pwd)
	# A temporary directory of its own: instances sharing /tmp collide on
	# their temporary table names (mariadb-install-db failed that way when
	# several suites ran at once).
	tmpdir="$datadir.tmp"
	mkdir -p "$tmpdir"
	# An existing datadir (a restart in a reconnect test) keeps its data.
	if [ ! -d "$datadir/mysql" ] && ! mariadb-install-db --no-defaults --user=root --datadir="$datadir" --tmpdir="$tmpdir" \
		--auth-root-authentication-method=socket >"$datadir/install.log" 2>&1; then
		echo "test-mariadb: mariadb-install-db failed, see $datadir/install.log" >&2
		exit 1
	fi
	# Small buffers: these are test servers on a shared 2-core box.
	# innodb_flush_log_at_trx_commit stays at its durable default (1).
	nohup mariadbd --no-defaults --user=root --datadir="$datadir" --tmpdir="$tmpdir" \
		--socket="$datadir/sock" --pid-file="$datadir/pid" \
		--port="$port" --bind-address=127.0.0.1 \
		--skip-name-resolve --innodb-buffer-pool-size=128M \
		--log-error="$datadir/error.log" </dev/null >/dev/null 2>&1 &
	server=$!
	i=0
	while [ $i -lt 300 ]; do
		if admin "$datadir" ping >/dev/null 2>&1; then
			break
		fi
		# Exited (its port taken: "Bind on TCP/IP port"): say so now.
		if ! kill -0 "$server" 2>/dev/null; then
			echo "test-mariadb: server exited at start, see $datadir/error.log" >&2
			exit 1
		fi
		i=$((i + 1))
		sleep 0.1
	done
	if [ $i -ge 300 ]; then
		echo "test-mariadb: server did not answer within 30 s, see $datadir/error.log" >&2
		exit 1
	fi
	mariadb --no-defaults --protocol=socket --socket="$datadir/sock" -uroot <<'EOF'
CREATE USER IF NOT EXISTS 'movie'@'%' IDENTIFIED BY 'movie';
CREATE USER IF NOT EXISTS 'movie'@'localhost' IDENTIFIED BY 'movie';
GRANT ALL PRIVILEGES ON *.* TO 'movie'@'%';
GRANT ALL PRIVILEGES ON *.* TO 'movie'@'localhost';
FLUSH PRIVILEGES;
EOF
	# TCP readiness too: the socket can answer before the port listens.
	i=0
	while ! mariadb-admin --no-defaults -h127.0.0.1 -P"$port" -umovie -pmovie \
		--connect-timeout=2 ping >/dev/null 2>&1; do
		i=$((i + 1))
		if [ $i -ge 100 ]; then
			echo "test-mariadb: 127.0.0.1:$port does not answer, see $datadir/error.log" >&2
			exit 1
		fi
		sleep 0.1
	done
}

# True when nothing holds 127.0.0.1:$1 (bound or listening): a bind test,
# which also sees sockets bound and not yet listening, as a starting server's.
port_free() {
	/usr/bin/python3 -c 'import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"
}

start_free() {
	datadir=$1
	port=$2
	tries=0
	while [ $tries -lt 20 ]; do
		tries=$((tries + 1))
		if [ "$port" -lt 32768 ] && port_free "$port"; then
			# A subshell: start exits on failure. Another process may take
			# the port between the check and the server's bind: then
			# clean up and go on with the next port.
			if (start "$datadir" "$port") 2>"$datadir.err"; then
				rm -f "$datadir.err"
				echo "$port"
				return 0
			fi
			stop "$datadir" 2>/dev/null || true
			cat "$datadir.err" >&2
			rm -rf "$datadir" "$datadir.err"
		fi
		port=$((port + 1))
	done
	echo "test-mariadb: no port from $2 on could be used (20 tried)" >&2
	exit 1
}

stop() {
	datadir=$1
	[ -e "$datadir/pid" ] || return 0
	pid=$(cat "$datadir/pid")
	if ! kill -0 "$pid" 2>/dev/null; then
		rm -f "$datadir/pid"
		return 0
	fi
	admin "$datadir" shutdown >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
	i=0
	while [ $i -lt 150 ] && kill -0 "$pid" 2>/dev/null; do
		i=$((i + 1))
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "test-mariadb: server $pid did not stop within 15 s, killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$datadir/pid"
	rm -rf "$datadir.tmp"
}

[ $# -ge 1 ] || usage
case $1 in
start) [ $# -eq 3 ] || usage; start "$2" "$3" ;;
start-free) [ $# -eq 3 ] || usage; start_free "$2" "$3" ;;
stop) [ $# -eq 2 ] || usage; stop "$2" ;;
*) usage ;;
esac
