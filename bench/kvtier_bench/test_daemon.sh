# Sourced by kvtier-bench's script tests: start_kvtierd KVTIERD ARGS... starts kvtierd on a
# socket in a fresh directory ($dir, with the socket at $dir/kvtierd.sock), waits for the
# socket, and stops the daemon and removes the directory when the script exits.
start_kvtierd() {
  local kvtierd=$1
  shift
  dir=$(mktemp -d)
  pid=
  trap '[[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
  "$kvtierd" --data-dir "$dir" --socket "$dir/kvtierd.sock" --log-level warn "$@" &
  pid=$!
  for _ in $(seq 100); do [[ -S $dir/kvtierd.sock ]] && break; sleep 0.1; done
  [[ -S $dir/kvtierd.sock ]] || { echo "FAIL: kvtierd did not open its socket"; exit 1; }
}
