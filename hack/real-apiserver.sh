#!/usr/bin/env bash
# A real Kubernetes v1.20.2 control plane on 127.0.0.1, for tests and CI (see docs/real-apiserver.md).
#
#   bash hack/real-apiserver.sh build                build (or find cached) kube-apiserver, -controller-manager, -scheduler
#   bash hack/real-apiserver.sh start [STATE_DIR]    certs + etcd + apiserver + controller-manager (+ scheduler); waits /readyz
#   bash hack/real-apiserver.sh stop [STATE_DIR]     stops every process start launched (pid files); no orphans
#   bash hack/real-apiserver.sh status [STATE_DIR]   prints each component's pid and state; exit 0 only if all run
#   bash hack/real-apiserver.sh env [STATE_DIR]      prints `export KUBECONFIG=...` lines for eval
#   bash hack/real-apiserver.sh clean                deletes the 2.3 GB source tree from the cache (keeps the binaries)
#
# The binaries come from Debian bookworm's `kubernetes` source package (1.20.5+really1.20.2), built fully offline
# from its vendor/ with Debian's golang-go 1.19. The vendored modern-go/reflect2 1.0.1 segfaults under Go >= 1.18
# the first time a custom resource is decoded, so vendor/ gets Debian's reflect2 1.0.2 and json-iterator 1.1.12.
# Binaries are cached in $KAITO_K8S_CACHE (default ~/.cache/kaito-py/k8s-1.20) and rebuilt only when missing.
# etcd is Debian's etcd-server (3.4), started by this script on loopback; the package's own daemon is never started.
#
# Environment:
#   KAITO_K8S_CACHE          cache directory (binaries in bin/, source in src/)
#   REAL_APISERVER_STATE     default STATE_DIR (default /tmp/kaito-py-real-apiserver)
#   REAL_APISERVER_CONTROLLERS  kube-controller-manager --controllers value
#                            (default: the list in DEFAULT_CONTROLLERS below)
#   REAL_APISERVER_SCHEDULER=1  also start kube-scheduler
#   REAL_APISERVER_PORT      apiserver secure port (default: a free port chosen at start)
#   REAL_APISERVER_READY_TIMEOUT  seconds to wait for /readyz (default 120)
#   REAL_APISERVER_OWNER_PID  if set at start: a watchdog stops everything when that process exits (even SIGKILL),
#                            so a crashed test runner leaves no orphan control plane behind
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF=$(readlink -f "${BASH_SOURCE[0]}")
CACHE=${KAITO_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kaito-py/k8s-1.20}
BIN=$CACHE/bin
SRC_PKG=kubernetes
SRC_DIR_GLOB="kubernetes-1.20.*"
COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler)
# Controllers the tests and LocalCluster(backend="real") need (issue 4), plus the ServiceAccount controllers so
# namespaces get their `default` ServiceAccount and token Secret as on a real 1.20 cluster. Keep in sync with
# DEFAULT_CONTROLLERS in src/kreconcile/testing/realserver.py.
DEFAULT_CONTROLLERS="garbagecollector,namespace,deployment,replicaset,statefulset,job,endpoint,endpointslice,\
serviceaccount,serviceaccount-token"
DEFAULT_STATE=${REAL_APISERVER_STATE:-/tmp/kaito-py-real-apiserver}
APT_PACKAGES_BUILD=(golang-go golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev jq rsync make
  dpkg-dev)
APT_PACKAGES_RUN=(etcd-server openssl curl)

log() { printf '[real-apiserver %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------------------- apt
apt_missing() {
  local p missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  echo "${missing[*]:-}"
}

ensure_deb_src() {
  if apt-get indextargets --format '$(CREATED_BY) $(TARGET_OF)' 2>/dev/null | grep -q 'Sources deb-src'; then
    return 0
  fi
  local f=/etc/apt/sources.list.d/kaito-py-deb-src.sources
  log "enabling deb-src for bookworm in $f"
  cat >"$f" <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  APT_UPDATED=0
}

APT_UPDATED=0
apt_install() {  # apt_install PKG...: installs the missing ones (root only); never starts a package's daemon
  local missing
  missing=$(apt_missing "$@")
  [ -z "$missing" ] && return 0
  [ "$(id -u)" = 0 ] || die "missing Debian packages: $missing (run as root, or: sudo apt-get install $missing)"
  command -v apt-get >/dev/null || die "missing packages $missing and no apt-get: this script needs Debian bookworm"
  if [ "$APT_UPDATED" = 0 ]; then
    log "apt-get update"
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    APT_UPDATED=1
  fi
  log "apt-get install $missing"
  # policy-rc.d (exit 101) keeps etcd-server from starting a system etcd on 2379. Another process may have put one
  # there already (hack/setup.sh does the same for docker-registry): only remove the file if we created it.
  local created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    $missing >/dev/null || { [ $created_policy = 1 ] && rm -f /usr/sbin/policy-rc.d; die "apt-get install failed"; }
  [ $created_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  return 0
}

# -------------------------------------------------------------------------------------------------------- build
have_binaries() {
  local c
  for c in "${COMPONENTS[@]}"; do [ -x "$BIN/$c" ] || return 1; done
}

cmd_build() {
  if have_binaries; then
    log "binaries cached in $BIN ($("$BIN/kube-apiserver" --version 2>/dev/null || echo '?'))"
    return 0
  fi
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.build.lock"
  if ! flock -n 9; then
    log "another build is running; waiting for it"
    flock 9
    have_binaries && { log "binaries built by the other run: $BIN"; return 0; }
  fi
  local t0 t1 t2 t3
  t0=$(date +%s)
  ensure_deb_src
  apt_install "${APT_PACKAGES_BUILD[@]}"
  t1=$(date +%s)
  log "packages ready in $((t1 - t0))s"

  mkdir -p "$CACHE/src"
  local srcdir
  srcdir=$(find "$CACHE/src" -maxdepth 1 -type d -name "$SRC_DIR_GLOB" | head -n1)
  if [ -z "$srcdir" ] || [ ! -f "$srcdir/.kaito-extracted" ]; then
    [ -n "$srcdir" ] && rm -rf "$srcdir"
    log "apt-get source $SRC_PKG (into $CACHE/src)"
    if [ "$APT_UPDATED" = 0 ] && ! (cd "$CACHE/src" && apt-get source -qq --download-only "$SRC_PKG" >/dev/null 2>&1)
    then
      apt-get -o DPkg::Lock::Timeout=600 update -qq
      APT_UPDATED=1
    fi
    (cd "$CACHE/src" && apt-get source -qq "$SRC_PKG" >/dev/null 2>&1) || die "apt-get source $SRC_PKG failed"
    srcdir=$(find "$CACHE/src" -maxdepth 1 -type d -name "$SRC_DIR_GLOB" | head -n1)
    [ -n "$srcdir" ] || die "apt-get source produced no $SRC_DIR_GLOB directory in $CACHE/src"
    touch "$srcdir/.kaito-extracted"
  fi
  patch_vendor "$srcdir"
  t2=$(date +%s)
  log "source ready in $((t2 - t1))s: $srcdir"

  log "go build (make WHAT=cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler); log: $CACHE/build.log"
  # hack/lib/init.sh forces GO111MODULE=off (a GOPATH build under _output/local/go); GOPROXY=off and GOFLAGS=-mod=
  # keep it offline. The source archive embeds its version (v1.20.2) for /version.
  local whats="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler"
  if ! (cd "$srcdir" && env GOPROXY=off GOFLAGS= GOTOOLCHAIN=local CGO_ENABLED=0 KUBE_VERBOSE=1 \
      PATH="/usr/lib/go/bin:$PATH" make WHAT="$whats" >"$CACHE/build.log" 2>&1); then
    tail -n 40 "$CACHE/build.log" >&2
    die "go build failed; full log: $CACHE/build.log"
  fi
  mkdir -p "$BIN.tmp"
  local c
  for c in "${COMPONENTS[@]}"; do
    install -m 0755 "$srcdir/_output/bin/$c" "$BIN.tmp/$c"
  done
  rm -rf "$BIN" && mv "$BIN.tmp" "$BIN"
  t3=$(date +%s)
  log "built in $((t3 - t2))s (total $((t3 - t0))s): $(ls "$BIN" | tr '\n' ' ')"
  log "timings: packages=$((t1 - t0))s source=$((t2 - t1))s compile=$((t3 - t2))s total=$((t3 - t0))s"
}

# patch_vendor SRCDIR: replace reflect2 1.0.1 / json-iterator 1.1.10 with Debian's 1.0.2 / 1.1.12 (Go >= 1.18 fix).
patch_vendor() {
  local src=$1 gocode=/usr/share/gocode/src/github.com
  [ -f "$src/vendor/.kaito-reflect2-1.0.2" ] && return 0
  [ -d "$gocode/modern-go/reflect2" ] || die "$gocode/modern-go/reflect2 missing (golang-github-modern-go-reflect2-dev)"
  [ -d "$gocode/json-iterator/go" ] || die "$gocode/json-iterator/go missing (golang-github-json-iterator-go-dev)"
  log "vendor/: modern-go/reflect2 -> 1.0.2, json-iterator/go -> 1.1.12 (Debian's)"
  local pair from to
  for pair in "modern-go/reflect2" "json-iterator/go"; do
    from=$gocode/$pair
    to=$src/vendor/github.com/$pair
    rm -rf "$to" && mkdir -p "$to"
    # -L: Debian's gocode tree may use symlinks; tests and examples are not needed to build.
    rsync -aL --exclude '*_test.go' --exclude 'test/' --exclude 'skip_tests/' --exclude 'benchmarks/' \
      --exclude 'example*' --exclude 'api_tests/' --exclude 'type_tests/' --exclude 'any_tests/' \
      --exclude 'extension_tests/' --exclude 'misc_tests/' --exclude 'value_tests/' "$from/" "$to/"
  done
  sed -i \
    -e 's|github.com/modern-go/reflect2 v1.0.1|github.com/modern-go/reflect2 v1.0.2|g' \
    -e 's|github.com/json-iterator/go v1.1.10|github.com/json-iterator/go v1.1.12|g' \
    "$src/vendor/modules.txt" "$src/go.mod"
  touch "$src/vendor/.kaito-reflect2-1.0.2"
}

# -------------------------------------------------------------------------------------------------- start/stop
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

free_port() {
  python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

gen_certs() {  # gen_certs PKI_DIR
  local pki=$1
  [ -f "$pki/.done" ] && return 0
  mkdir -p "$pki"
  (
    cd "$pki"
    umask 077
    # ECDSA P-256 throughout: as good as RSA-2048 here and ~100x cheaper to generate on a busy machine. The
    # service-account key signs tokens with ES256, which 1.20 supports.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=kaito-py-real-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      2>/dev/null
    cat >serving.ext <<'EOF'
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EOF
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout serving.key -out serving.csr -subj "/CN=kube-apiserver" 2>/dev/null
    openssl x509 -req -in serving.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out serving.crt -days 3650 \
      -extfile serving.ext 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' \
      >client.ext
    # system:masters is the group RBAC's cluster-admin binding (and the authorizer's superuser check) trusts.
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=kaito-admin" \
      2>/dev/null
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out admin.crt -days 3650 \
      -extfile client.ext 2>/dev/null
    openssl ecparam -name prime256v1 -genkey -noout -out sa.key 2>/dev/null
    openssl ec -in sa.key -pubout -out sa.pub 2>/dev/null
    # The static token: column 4 is the group list; system:masters again.
    printf '%s,kaito-admin,kaito-admin,"system:masters"\n' "$(openssl rand -hex 24)" >tokens.csv
    rm -f ./*.csr ./*.ext ca.srl
    touch .done
  )
}

pidfile() { echo "$STATE/run/$1.pid"; }

running() {  # running NAME: the pid in NAME's pid file is alive and is that program
  local pf pid
  pf=$(pidfile "$1")
  [ -f "$pf" ] || return 1
  pid=$(cat "$pf")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  grep -q "$2" "/proc/$pid/cmdline" 2>/dev/null
}

launch() {  # launch NAME BINARY ARGS...: start in its own session, output to STATE/logs/NAME.log, record the pid
  local name=$1
  shift
  setsid "$@" >"$STATE/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$(pidfile "$name")"
}

wait_http() {  # wait_http NAME URL TIMEOUT CURL_ARGS...: poll until 200 or the process dies
  local name=$1 url=$2 timeout=$3
  shift 3
  local deadline=$(($(date +%s) + timeout))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if curl -fsS -o /dev/null --max-time 2 "$@" "$url" 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$(cat "$(pidfile "$name")")" 2>/dev/null; then
      tail -n 30 "$STATE/logs/$name.log" >&2
      die "$name exited during start-up; log: $STATE/logs/$name.log"
    fi
    sleep 0.2
  done
  tail -n 30 "$STATE/logs/$name.log" >&2
  die "$name not ready at $url after ${timeout}s; log: $STATE/logs/$name.log"
}

wait_sa_token() {  # wait_sa_token URL PKI: until default/default ServiceAccount lists a token Secret (60 s)
  local url=$1 pki=$2 deadline=$(($(date +%s) + 60))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if curl -fsS --max-time 2 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
      "$url/api/v1/namespaces/default/serviceaccounts/default" 2>/dev/null | grep -q '"secrets"'; then
      return 0
    fi
    kill -0 "$(cat "$(pidfile kube-controller-manager)")" 2>/dev/null || {
      tail -n 30 "$STATE/logs/kube-controller-manager.log" >&2
      die "kube-controller-manager exited during start-up; log: $STATE/logs/kube-controller-manager.log"
    }
    sleep 0.2
  done
  die "the default ServiceAccount got no token within 60 s; log: $STATE/logs/kube-controller-manager.log"
}

write_kubeconfig() {  # write_kubeconfig FILE URL USER_BLOCK
  local file=$1 url=$2 user=$3
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kaito-real
  cluster:
    server: $url
    certificate-authority: $STATE/pki/ca.crt
contexts:
- name: kaito-real
  context:
    cluster: kaito-real
    user: kaito-admin
    namespace: default
current-context: kaito-real
users:
- name: kaito-admin
  user:
$user
EOF
  chmod 600 "$file"
}

cmd_start() {
  local t0
  t0=$(date +%s.%N)
  have_binaries || cmd_build
  apt_install "${APT_PACKAGES_RUN[@]}"
  mkdir -p "$STATE/run" "$STATE/logs" "$STATE/etcd"
  if running kube-apiserver kube-apiserver; then
    log "already running (state $STATE); kubeconfig: $STATE/kubeconfig"
    return 0
  fi
  cmd_stop quiet
  # A failed start (a component exits, /readyz times out) must not leave the others running.
  trap 'rc=$?; if [ "$rc" != 0 ]; then log "start failed; stopping what was started"; cmd_stop quiet; fi' EXIT
  local tc te ta
  gen_certs "$STATE/pki"
  tc=$(date +%s.%N)
  local pki=$STATE/pki etcd_port etcd_peer api_port
  etcd_port=$(free_port)
  etcd_peer=$(free_port)
  api_port=${REAL_APISERVER_PORT:-$(free_port)}

  launch etcd /usr/bin/etcd --name kaito-real --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "kaito-real=http://127.0.0.1:$etcd_peer" --listen-metrics-urls "" \
    --quota-backend-bytes 2147483648 --logger zap --log-level warn
  wait_http etcd "http://127.0.0.1:$etcd_port/health" 30
  te=$(date +%s.%N)

  # --endpoint-reconciler-type=none: no "kubernetes" Endpoints pointing at a non-routable advertise address;
  # --service-cluster-ip-range is required by the allocator even without a network. The 1.20 default admission
  # plugins stay on (ServiceAccount, DefaultTolerationSeconds, ResourceQuota, webhooks, ...) except
  # StorageObjectInUseProtection, whose PVC/PV finalizers would need the pvc-protection controller to ever clear.
  # Authorization: RBAC (+ Node); the admin certificate and token are in system:masters, which RBAC never denies.
  launch kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --endpoint-reconciler-type none \
    --tls-cert-file "$pki/serving.crt" --tls-private-key-file "$pki/serving.key" \
    --client-ca-file "$pki/ca.crt" --token-auth-file "$pki/tokens.csv" \
    --authorization-mode Node,RBAC \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-account-issuer "https://kubernetes.default.svc.cluster.local" \
    --service-cluster-ip-range 10.0.0.0/24 \
    --allow-privileged=true \
    --disable-admission-plugins StorageObjectInUseProtection \
    --watch-cache=true --profiling=false --v=1
  local url="https://127.0.0.1:$api_port"
  write_kubeconfig "$STATE/kubeconfig" "$url" "    client-certificate: $pki/admin.crt
    client-key: $pki/admin.key"
  write_kubeconfig "$STATE/kubeconfig-token" "$url" "    token: $(cut -d, -f1 "$pki/tokens.csv")"
  wait_http kube-apiserver "$url/readyz" "${REAL_APISERVER_READY_TIMEOUT:-120}" \
    --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key"
  ta=$(date +%s.%N)

  # The controller-manager and scheduler talk to the apiserver as admin over the client-cert kubeconfig.
  local controllers=${REAL_APISERVER_CONTROLLERS:-$DEFAULT_CONTROLLERS}
  launch kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$STATE/kubeconfig" --authentication-kubeconfig "$STATE/kubeconfig" \
    --authorization-kubeconfig "$STATE/kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 0 --port 0 \
    --controllers "$controllers" --leader-elect=false \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --use-service-account-credentials=false \
    --concurrent-gc-syncs 5 --v=1
  if [ "${REAL_APISERVER_SCHEDULER:-0}" = 1 ]; then
    launch kube-scheduler "$BIN/kube-scheduler" \
      --kubeconfig "$STATE/kubeconfig" --authentication-kubeconfig "$STATE/kubeconfig" \
      --authorization-kubeconfig "$STATE/kubeconfig" \
      --bind-address 127.0.0.1 --secure-port 0 --port 0 --leader-elect=false --v=1
  fi
  # Pods are refused (ServiceAccount admission) until their namespace's `default` ServiceAccount has a token
  # Secret: wait for it in `default`, so "ready" means a pod can be created there at once.
  case ",$controllers," in
    *,serviceaccount-token,* | *,\*,*) wait_sa_token "$url" "$pki" ;;
  esac
  cat >"$STATE/env" <<EOF
export KUBECONFIG=$STATE/kubeconfig
export REAL_APISERVER_URL=$url
export REAL_APISERVER_STATE=$STATE
EOF
  if [ -n "${REAL_APISERVER_OWNER_PID:-}" ]; then
    kill -0 "$REAL_APISERVER_OWNER_PID" 2>/dev/null || die "REAL_APISERVER_OWNER_PID=$REAL_APISERVER_OWNER_PID is not running"
    launch watchdog bash "$SELF" _watch "$STATE" "$REAL_APISERVER_OWNER_PID"
  fi
  echo "$url" >"$STATE/url"
  trap - EXIT
  log "timings: certs+packages=$(elapsed "$t0" "$tc")s etcd=$(elapsed "$tc" "$te")s apiserver-readyz=$(elapsed "$te" "$ta")s"
  log "ready in $(elapsed "$t0" "$(date +%s.%N)")s: $url  KUBECONFIG=$STATE/kubeconfig (token: $STATE/kubeconfig-token)"
}

# stop_pid NAME: SIGTERM the process group of NAME, then SIGKILL after 10s; removes the pid file.
stop_pid() {
  local name=$1 pf pid i
  pf=$(pidfile "$name")
  [ -f "$pf" ] || return 0
  pid=$(cat "$pf")
  # Every process this script starts names STATE in its arguments: a stale pid file (reboot, pid reuse) must never
  # make us signal someone else's process.
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$STATE"
  then
    # setsid made the process a group leader: signal the group, so helpers it forked go too.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name (pid $pid) ignored SIGTERM; SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pf"
}

cmd_stop() {
  [ -d "$STATE/run" ] || { [ "${1:-}" = quiet ] || log "nothing started in $STATE"; return 0; }
  local c
  # Reverse start order: clients first, etcd last (so the apiserver can shut down cleanly). The watchdog itself
  # runs this function when its owner dies; it must not signal its own process group half-way.
  [ "${IN_WATCHDOG:-0}" = 1 ] || stop_pid watchdog
  for c in kube-scheduler kube-controller-manager kube-apiserver etcd; do stop_pid "$c"; done
  [ "${IN_WATCHDOG:-0}" = 1 ] && rm -f "$(pidfile watchdog)"
  [ "${1:-}" = quiet ] || log "stopped (state kept in $STATE; delete it for a fresh cluster)"
}

cmd_status() {
  local c rc=0 pf
  for c in etcd kube-apiserver kube-controller-manager kube-scheduler watchdog; do
    pf=$(pidfile "$c")
    if [ ! -f "$pf" ]; then
      [ "$c" = kube-scheduler ] || [ "$c" = watchdog ] || { echo "$c: not started"; rc=1; }
    elif kill -0 "$(cat "$pf")" 2>/dev/null; then
      echo "$c: running (pid $(cat "$pf"), rss $(awk '/VmRSS/{print $2" "$3}' "/proc/$(cat "$pf")/status"))"
    else
      echo "$c: dead (pid $(cat "$pf")); log: $STATE/logs/$c.log"
      rc=1
    fi
  done
  [ -f "$STATE/url" ] && echo "url: $(cat "$STATE/url")  kubeconfig: $STATE/kubeconfig"
  return $rc
}

cmd_watch() {  # internal: poll the owner pid once a second; stop everything when it is gone
  local owner=$1
  while kill -0 "$owner" 2>/dev/null; do sleep 1; done
  log "owner pid $owner exited; stopping the control plane in $STATE"
  IN_WATCHDOG=1 cmd_stop
}

cmd_clean() {
  [ -d "$CACHE/src" ] || { log "nothing to clean in $CACHE"; return 0; }
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.build.lock"
  flock -n 9 || die "a build is running in $CACHE; clean after it finishes"
  rm -rf "$CACHE/src"
  log "deleted $CACHE/src; binaries kept in $BIN (a later build without them fetches the source again)"
}

cmd_env() {
  [ -f "$STATE/env" ] || die "not started in $STATE (run: bash hack/real-apiserver.sh start $STATE)"
  cat "$STATE/env"
}

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

main() {
  local cmd=${1:-}
  [ $# -gt 0 ] && shift
  case "$cmd" in
    start)
      mkdir -p "${1:-$DEFAULT_STATE}"
      STATE=$(cd "${1:-$DEFAULT_STATE}" && pwd)
      ;;
    stop | status | env | _watch)
      STATE=$(cd "${1:-$DEFAULT_STATE}" 2>/dev/null && pwd || echo "${1:-$DEFAULT_STATE}")
      ;;
  esac
  case "$cmd" in
    build) cmd_build ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    clean) cmd_clean ;;
    _watch) cmd_watch "$2" ;;
    *) usage ;;
  esac
}

cd "$ROOT"
main "$@"; exit $?
