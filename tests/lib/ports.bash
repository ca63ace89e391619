# shellcheck shell=bash
# free_port, shared by common.bash (the suites) and pg.bash (which plain
# bash scripts such as bench/pg.sh source without bats).

# A TCP port on 127.0.0.1 that nobody listens on right now.
free_port() {
	local p
	if command -v python3 >/dev/null 2>&1 &&
		p=$(python3 -c 'import socket
s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()' 2>/dev/null) &&
		[[ $p =~ ^[0-9]+$ ]]; then
		printf '%s\n' "$p"
		return 0
	fi
	local i
	for i in $(seq 1 200); do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 9<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			printf '%s\n' "$p"
			return 0
		fi
	done
	return 1
}
