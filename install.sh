#!/bin/sh
# hitl-gate installer: the shim into an agent image or host, or the approval server onto its
# host. POSIX sh (dash, bash, busybox ash). docs/install.md explains the choices.
#
#   install.sh agent  (--binary PATH --sha256 HEX | --from-source)
#                     [--tools LIST]
#                     [--server URL --public-key HEX --token-file FILE [--ca-file FILE]]
#                     [--agent-group GROUP] [--agent-user USER] [--prefix DIR]
#                     [--lockdown --agent-user USER [--runner-user NAME] [--writer-user NAME]
#                      [--real TOOL=PATH]... [--read-kubeconfig FILE --write-kubeconfig FILE]
#                      [--writer-token-file FILE] [--terraform-providers DIR]
#                      [--workspace DIR]...]
#   install.sh server (--binary PATH --sha256 HEX | --from-source)
#                     [--listen ADDR [--tls-cert FILE --tls-key FILE]] [--user NAME]
#                     [--prefix DIR]
#   common:           [--root DIR] [--dry-run] [--uninstall [--purge]]
#
# both:   PREFIX/bin/hitl-gate, and its shell completions and man pages, made by running it:
#         PREFIX/share/bash-completion/completions/hitl-gate, PREFIX/share/zsh/site-functions/
#         _hitl-gate, PREFIX/share/fish/vendor_completions.d/hitl-gate.fish and
#         PREFIX/share/man/man1/hitl-gate*.1 (skipped, with a note, when it cannot run here).
# agent:  PREFIX/shims/{terraform,tofu,kubectl,helm} (--tools: only those of a comma-separated
#         list, e.g. kubectl,helm); the system policy
#         /etc/hitl-gate/policy.toml (root, 0644), written when absent and never overwritten;
#         the agent token /etc/hitl-gate/agent.token (root, readable by --agent-group only);
#         /etc/profile.d/hitl-gate.sh (PATH); then `hitl-gate doctor` as --agent-user.
# --lockdown: two users, the runner (default hitl-runner, home /var/lib/hitl-runner, 0700),
#         which runs what the agent steers with the read credential, and the writer (default
#         hitl-writer, home /var/lib/hitl-writer, 0700), which alone holds the write credential
#         and runs approved runs only; the group hitl-tools of both (their units' supplementary
#         group); the real tools copied to PREFIX/real (root:hitl-tools 0750); the read
#         kubeconfig in the runner's home, the write kubeconfig and the writer's token in the
#         writer's (each 0600, its owner's); the agent token readable by the runner only; the
#         [lockdown] and [lockdown.writer] sections in the new system policy; both units,
#         /etc/systemd/system/hitl-gate-runner.service and hitl-gate-writer.service (the
#         writer's socket directory entered by the runner's group alone); and, per --workspace,
#         an ACL (with a default ACL) that lets the runner and the writer write there.
# server: PREFIX/bin/hitl-gate, the service user, /etc/hitl-gate/server.toml, the systemd unit
#         /etc/systemd/system/hitl-gate.service, the data dir /var/lib/hitl-gate with the
#         server's signing key; it prints the public key and how to make agent tokens. A
#         --listen address that is not loopback needs --tls-cert and --tls-key (the server
#         refuses to listen there in clear text): they are copied to /etc/hitl-gate/tls/
#         (cert.pem 0644, key.pem 0640 readable by the service's group) and named in
#         server.toml ([serve] tls_cert, tls_key).
#
# Every run is idempotent (a second one changes nothing, and says so). --dry-run prints each
# action once and changes nothing. --uninstall removes what was installed and keeps the policy, the
# token and the server's data unless --purge. --root installs below another root (image builds,
# tests); nothing outside it is touched.
set -eu

PROG=install.sh
say() { printf '%s: %s\n' "$PROG" "$*"; }
die() { printf '%s: %s\n' "$PROG" "$*" >&2; exit 1; }

usage() {
  sed -n '2,/^set -eu/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  exit "${1:-2}"
}

[ $# -ge 1 ] || usage
MODE=$1
shift
case $MODE in
  agent|server) ;;
  -h|--help|help) usage 0 ;;
  *) die "unknown mode '$MODE' (agent or server)" ;;
esac

ROOT=
PREFIX=/opt/hitl-gate
BINARY=
SHA256=
FROM_SOURCE=
SERVER_URL=
PUBLIC_KEY=
TOKEN_FILE=
CA_FILE=
AGENT_GROUP=
AGENT_USER=
LISTEN=127.0.0.1:8080
TLS_CERT=
TLS_KEY=
TOOLS=terraform,tofu,kubectl,helm
SERVICE_USER=hitl-gate
DRY=
UNINSTALL=
PURGE=
LOCKDOWN=
RUNNER_USER=hitl-runner
WRITER_USER=hitl-writer
WRITER_TOKEN=
TF_PROVIDERS=
REAL=
READ_KUBECONFIG=
WRITE_KUBECONFIG=
WORKSPACES=

need() { [ $# -ge 2 ] || die "$1 needs a value"; }
no_space() { case $1 in *[[:space:]]*) die "'$1': paths with spaces are not supported here" ;; esac; }
while [ $# -gt 0 ]; do
  case $1 in
    --root) need "$@"; ROOT=$2; shift 2 ;;
    --prefix) need "$@"; PREFIX=$2; shift 2 ;;
    --binary) need "$@"; BINARY=$2; shift 2 ;;
    --sha256) need "$@"; SHA256=$2; shift 2 ;;
    --from-source) FROM_SOURCE=1; shift ;;
    --server) need "$@"; SERVER_URL=$2; shift 2 ;;
    --public-key) need "$@"; PUBLIC_KEY=$2; shift 2 ;;
    --token-file) need "$@"; TOKEN_FILE=$2; shift 2 ;;
    --ca-file) need "$@"; CA_FILE=$2; shift 2 ;;
    --agent-group) need "$@"; AGENT_GROUP=$2; shift 2 ;;
    --agent-user) need "$@"; AGENT_USER=$2; shift 2 ;;
    --listen) need "$@"; LISTEN=$2; shift 2 ;;
    --tls-cert) need "$@"; TLS_CERT=$2; shift 2 ;;
    --tls-key) need "$@"; TLS_KEY=$2; shift 2 ;;
    --tools) need "$@"; TOOLS=$2; shift 2 ;;
    --user) need "$@"; SERVICE_USER=$2; shift 2 ;;
    --lockdown) LOCKDOWN=1; shift ;;
    --runner-user) need "$@"; RUNNER_USER=$2; shift 2 ;;
    --writer-user) need "$@"; WRITER_USER=$2; shift 2 ;;
    --writer-token-file) need "$@"; WRITER_TOKEN=$2; shift 2 ;;
    --terraform-providers) need "$@"; no_space "$2"; TF_PROVIDERS=$2; shift 2 ;;
    --real) need "$@"; no_space "$2"; REAL="$REAL $2"; shift 2 ;;
    --read-kubeconfig) need "$@"; READ_KUBECONFIG=$2; shift 2 ;;
    --write-kubeconfig) need "$@"; WRITE_KUBECONFIG=$2; shift 2 ;;
    --workspace) need "$@"; no_space "$2"; WORKSPACES="$WORKSPACES $2"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    --purge) PURGE=1; shift ;;
    -h|--help) usage 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done

[ -z "$PURGE" ] || [ -n "$UNINSTALL" ] || die "--purge goes with --uninstall"
# --tools: a comma-separated subset of the four tools, each once.
SHIM_TOOLS=
for tool in $(printf '%s' "$TOOLS" | tr ',' ' '); do
  case $tool in
    terraform|tofu|kubectl|helm) ;;
    *) die "--tools: unknown tool '$tool' (terraform, tofu, kubectl, helm)" ;;
  esac
  case " $SHIM_TOOLS " in *" $tool "*) die "--tools: $tool is named twice" ;; esac
  SHIM_TOOLS="$SHIM_TOOLS $tool"
done
[ -n "$SHIM_TOOLS" ] || die "--tools: name at least one tool"
[ -z "$TLS_CERT$TLS_KEY" ] || [ "$MODE" = server ] || die "--tls-cert and --tls-key are for the server"
if [ -n "$TLS_CERT" ] || [ -n "$TLS_KEY" ]; then
  if [ -z "$TLS_CERT" ] || [ -z "$TLS_KEY" ]; then die "--tls-cert and --tls-key go together"; fi
  [ -f "$TLS_CERT" ] || die "--tls-cert $TLS_CERT: no such file"
  [ -f "$TLS_KEY" ] || die "--tls-key $TLS_KEY: no such file"
fi
if [ "$MODE" = server ] && [ -z "$UNINSTALL" ] && [ -z "$TLS_CERT" ]; then
  case $LISTEN in
    127.*|localhost:*|\[::1\]:*) ;;
    *) die "--listen $LISTEN is not a loopback address, and the server refuses to listen there without TLS (approvals and agent tokens would cross the network in clear text): give --tls-cert FILE and --tls-key FILE, or listen on 127.0.0.1 behind a TLS-terminating proxy" ;;
  esac
fi
case $PREFIX in /*) ;; *) die "--prefix must be an absolute path" ;; esac
if [ -n "$ROOT" ]; then
  case $ROOT in /*) ;; *) ROOT=$(pwd)/$ROOT ;; esac
  ROOT=${ROOT%/}
  [ -d "$ROOT" ] || die "--root $ROOT is not a directory"
fi

# Paths inside the target root.
P=$ROOT$PREFIX
ETC=$ROOT/etc/hitl-gate
MANIFEST=$P/.installed-by-install.sh
CHANGED=0

# --- actions: each says what it does, does nothing under --dry-run, and counts changes
act() {
  CHANGED=$((CHANGED + 1))
  if [ -n "$DRY" ]; then say "would $*"; else say "$*"; fi
}
run() { [ -n "$DRY" ] || "$@"; }

# Directories this run created, recorded for --uninstall (removed again when empty).
CREATED_DIRS=
ensure_dir() { # path mode
  [ -d "$1" ] && return 0
  # In a dry run nothing is created: a directory already announced is not announced again.
  case " $CREATED_DIRS " in *" ${1#"$ROOT"} "*) return 0 ;; esac
  parent=$(dirname "$1")
  [ -d "$parent" ] || ensure_dir "$parent" 0755
  act "create $1/"
  run mkdir "$1"
  run chmod "$2" "$1"
  CREATED_DIRS="$CREATED_DIRS ${1#"$ROOT"}"
}

# Records the directories created, once the manifest's own directory exists.
record_dirs() {
  for d in $CREATED_DIRS; do record "dir:$d"; done
}

# Installs $1 as $2 with mode $3 and owner $4 when missing or different.
ensure_file() {
  if [ -f "$2" ] && cmp -s "$1" "$2"; then
    ensure_owner_mode "$2" "$3" "$4"
    return 0
  fi
  if [ -e "$2" ]; then act "replace $2"; else act "install $2"; fi
  if [ -z "$DRY" ]; then
    cp "$1" "$2.tmp.$$"
    chown "$4" "$2.tmp.$$"
    chmod "$3" "$2.tmp.$$"
    mv -f "$2.tmp.$$" "$2"
  fi
}

ensure_owner_mode() { # path mode owner(uid:gid)
  now=$(stat -c '%u:%g %a' "$1" 2>/dev/null || echo none)
  if [ "$now" != "$3 $(printf '%o' "0$2")" ]; then
    act "set $1 to owner $3, mode $2"
    run chown "$3" "$1"
    run chmod "$2" "$1"
  fi
}

ensure_link() { # target linkpath
  if [ -L "$2" ] && [ "$(readlink "$2")" = "$1" ]; then return 0; fi
  act "link $2 -> $1"
  run rm -f "$2"
  run ln -s "$1" "$2"
}

record() { # the paths this installer owns, for --uninstall
  [ -n "$DRY" ] && return 0
  for f in "$@"; do
    grep -qxF "$f" "$MANIFEST" 2>/dev/null || printf '%s\n' "$f" >>"$MANIFEST"
  done
}

# A group or user id: numeric as given, else looked up in the target root's /etc files.
lookup_id() { # file name
  case $2 in
    ''|*[!0-9]*) ;;
    *) echo "$2"; return 0 ;;
  esac
  awk -F: -v n="$2" '$1 == n { print $3; found = 1 } END { exit !found }' "$1" 2>/dev/null
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# --- the binary: a checked file, or the static build of this checkout
binary() {
  if [ -n "$FROM_SOURCE" ]; then
    [ -z "$BINARY" ] || die "--binary and --from-source exclude each other"
    here=$(cd "$(dirname "$0")" && pwd)
    [ -x "$here/scripts/build-static" ] || die "--from-source needs a hitl-gate checkout around install.sh"
    BINARY=$here/$("$here/scripts/build-static")
    SHA256=$(sha "$BINARY")
  fi
  [ -n "$BINARY" ] || die "give --binary PATH --sha256 HEX, or --from-source"
  [ -f "$BINARY" ] || die "--binary $BINARY: no such file"
  [ -n "$SHA256" ] || die "--binary needs --sha256 (the hitl-gate release's checksum)"
  got=$(sha "$BINARY")
  [ "$got" = "$SHA256" ] || die "$BINARY has sha256 $got, not $SHA256: nothing was installed"
}

install_binary() {
  ensure_dir "$P" 0755
  ensure_dir "$P/bin" 0755
  ensure_file "$BINARY" "$P/bin/hitl-gate" 0755 0:0
  record "$PREFIX/bin/hitl-gate"
  install_completions_and_man
}

# The shell completions and man pages, as the binary being installed prints them. It runs
# through a link named hitl-gate (the name it answers to as the CLI), so a dry run can compare
# them with what is installed. A binary that cannot run here (another architecture, for an
# image) installs neither.
install_completions_and_man() {
  gen=$(mktemp -d)
  case $BINARY in /*) ln -s "$BINARY" "$gen/hitl-gate" ;; *) ln -s "$(pwd)/$BINARY" "$gen/hitl-gate" ;; esac
  mkdir "$gen/man"
  if ! { "$gen/hitl-gate" completions bash >"$gen/bash" && "$gen/hitl-gate" completions zsh >"$gen/zsh" &&
    "$gen/hitl-gate" completions fish >"$gen/fish" && "$gen/hitl-gate" man --dir "$gen/man" >/dev/null; } 2>"$gen/err"; then
    why=$(head -n 1 "$gen/err")
    say "no shell completions or man pages: $BINARY cannot make them here${why:+ ($why)}"
    rm -rf "$gen"
    return 0
  fi
  share=$P/share
  for pair in "bash:bash-completion/completions/hitl-gate" "zsh:zsh/site-functions/_hitl-gate" \
    "fish:fish/vendor_completions.d/hitl-gate.fish"; do
    dest=$share/${pair#*:}
    ensure_dir "$(dirname "$dest")" 0755
    ensure_file "$gen/${pair%%:*}" "$dest" 0644 0:0
    record "$PREFIX/share/${pair#*:}"
  done
  ensure_dir "$share/man/man1" 0755
  for page in "$gen/man/"*.1; do
    ensure_file "$page" "$share/man/man1/${page##*/}" 0644 0:0
    record "$PREFIX/share/man/man1/${page##*/}"
  done
  rm -rf "$gen"
}

# --- uninstall: what the manifest lists, but the policy, the token and data unless --purge
uninstall() {
  if [ ! -f "$MANIFEST" ]; then
    if [ -z "$PURGE" ]; then
      say "nothing to uninstall under $P (no record of an installation)"
      return 0
    fi
    # What an earlier --uninstall kept: the files install.sh writes, by their fixed names.
    for f in /etc/hitl-gate/policy.toml /etc/hitl-gate/agent.token /etc/hitl-gate/ca.pem \
      /etc/hitl-gate/server.toml /etc/hitl-gate/tls /var/lib/hitl-gate /var/lib/hitl-runner /var/lib/hitl-writer; do
      if [ -e "$ROOT$f" ]; then act "remove $ROOT$f"; run rm -rf "$ROOT$f"; fi
    done
    if [ -d "$ETC" ] && [ -z "$(ls -A "$ETC")" ]; then act "remove $ETC/"; run rmdir "$ETC"; fi
    return 0
  fi
  dirs=
  while IFS= read -r f; do
    case $f in
      dir:*) dirs="${f#dir:} $dirs"; continue ;;
      /etc/hitl-gate/*|/var/lib/hitl-gate*|/var/lib/hitl-runner*|/var/lib/hitl-writer*)
        if [ -z "$PURGE" ]; then say "keep $ROOT$f (policy or data; --purge removes it)"; continue; fi ;;
    esac
    if [ -e "$ROOT$f" ] || [ -L "$ROOT$f" ]; then
      act "remove $ROOT$f"
      run rm -rf "$ROOT$f"
    fi
  done <"$MANIFEST"
  act "remove $MANIFEST"
  run rm -f "$MANIFEST"
  # The directories it created, deepest first, when nothing else is in them.
  for d in $dirs; do
    if [ -d "$ROOT$d" ] && [ -z "$(ls -A "$ROOT$d")" ]; then
      act "remove $ROOT$d/"
      run rmdir "$ROOT$d"
    fi
  done
}

# --- agent
policy_text() {
  printf '%s\n' \
    '# hitl-gate system policy, written by install.sh. It wins over HITL_GATE_POLICY; keep it' \
    '# root-owned. Every setting: docs/policy.md; the built-in rules apply after your own.' \
    'version = 1' \
    '' \
    '[approval]' \
    "url = \"$SERVER_URL\"" \
    'token_file = "/etc/hitl-gate/agent.token"' \
    "public_key = \"$PUBLIC_KEY\""
  if [ -n "$CA_FILE" ]; then printf '%s\n' 'ca_file = "/etc/hitl-gate/ca.pem"'; fi
}

agent() {
  install_binary
  ensure_dir "$P/shims" 0755
  for tool in $SHIM_TOOLS; do
    ensure_link ../bin/hitl-gate "$P/shims/$tool"
    record "$PREFIX/shims/$tool"
  done

  ensure_dir "$ROOT/etc" 0755
  ensure_dir "$ETC" 0755
  gid=0
  if [ -n "$AGENT_GROUP" ]; then
    gid=$(lookup_id "$ROOT/etc/group" "$AGENT_GROUP") || die "--agent-group $AGENT_GROUP: no such group in $ROOT/etc/group"
  fi
  token_gid=$gid
  if [ -n "$LOCKDOWN" ]; then
    lockdown_runner
    token_gid=$RUNNER_GID
  fi
  if [ -n "$TOKEN_FILE" ]; then
    [ -f "$TOKEN_FILE" ] || die "--token-file $TOKEN_FILE: no such file"
    [ -n "$AGENT_GROUP" ] || [ -n "$LOCKDOWN" ] || die "--token-file needs --agent-group (the token is readable by that group only)"
    ensure_file "$TOKEN_FILE" "$ETC/agent.token" 0640 "0:$token_gid"
    record /etc/hitl-gate/agent.token
  fi
  if [ -n "$CA_FILE" ]; then
    [ -f "$CA_FILE" ] || die "--ca-file $CA_FILE: no such file"
    ensure_file "$CA_FILE" "$ETC/ca.pem" 0644 0:0
    record /etc/hitl-gate/ca.pem
  fi

  policy=$ETC/policy.toml
  if [ -n "$SERVER_URL" ] || [ -n "$PUBLIC_KEY" ]; then
    if [ -z "$SERVER_URL" ] || [ -z "$PUBLIC_KEY" ] || [ -z "$TOKEN_FILE" ]; then
      die "--server, --public-key and --token-file go together"
    fi
    tmp=$(mktemp)
    policy_text >"$tmp"
    [ -z "$LOCKDOWN" ] || lockdown_policy_text >>"$tmp"
    if [ -f "$policy" ]; then
      if ! cmp -s "$tmp" "$policy"; then
        say "$policy exists and is kept; it differs from what install.sh would write:"
        diff -u "$policy" "$tmp" | sed '1,2d' || true
      fi
    else
      ensure_file "$tmp" "$policy" 0644 0:0
      record /etc/hitl-gate/policy.toml
    fi
    rm -f "$tmp"
  elif [ ! -f "$policy" ]; then
    say "no system policy written (give --server, --public-key and --token-file): gated commands will exit 83 until there is one"
  fi

  ensure_dir "$ROOT/etc/profile.d" 0755
  profile=$(mktemp)
  printf '%s\n' \
    '# hitl-gate: its shims come first on PATH, before the real terraform, kubectl and helm.' \
    "case \":\$PATH:\" in *\":$PREFIX/shims:\"*) ;; *) PATH=\"$PREFIX/shims:\$PATH\"; export PATH ;; esac" \
    >"$profile"
  ensure_file "$profile" "$ROOT/etc/profile.d/hitl-gate.sh" 0644 0:0
  rm -f "$profile"
  record /etc/profile.d/hitl-gate.sh
  [ -z "$LOCKDOWN" ] || lockdown_unit_and_workspaces
  record_dirs

  if [ -n "$DRY" ]; then
    :
  elif [ -n "$ROOT" ]; then
    say "installed under $ROOT: run '$PREFIX/bin/hitl-gate doctor' as the agent's user inside it"
  elif [ -n "$AGENT_USER" ]; then
    say "hitl-gate doctor, as $AGENT_USER:"
    su -s /bin/sh -c "PATH=$PREFIX/shims:\$PATH $PREFIX/bin/hitl-gate doctor" "$AGENT_USER" || true
  else
    say "give --agent-user to run 'hitl-gate doctor' as the agent's user; as root:"
    PATH=$PREFIX/shims:$PATH "$PREFIX/bin/hitl-gate" doctor || true
  fi
}

# --- lockdown (agent --lockdown): the runner's and the writer's users, the real tools, their
# credentials
RUNNER_HOME=/var/lib/hitl-runner
WRITER_HOME=/var/lib/hitl-writer
TOOLS_GROUP=hitl-tools
lockdown_runner() {
  [ -n "$AGENT_USER" ] || die "--lockdown needs --agent-user (the uid the runner serves)"
  if [ -n "$READ_KUBECONFIG$WRITE_KUBECONFIG" ] && { [ -z "$READ_KUBECONFIG" ] || [ -z "$WRITE_KUBECONFIG" ]; }; then
    die "--read-kubeconfig and --write-kubeconfig go together"
  fi
  [ "$RUNNER_USER" != "$WRITER_USER" ] || die "--runner-user and --writer-user must differ: the runner must not read the write credential"
  AGENT_UID=$(lookup_id "$ROOT/etc/passwd" "$AGENT_USER") || die "--agent-user $AGENT_USER: no such user in $ROOT/etc/passwd"
  ensure_user "$RUNNER_USER" "$RUNNER_HOME" "hitl-gate runner (lockdown)"
  ensure_user "$WRITER_USER" "$WRITER_HOME" "hitl-gate writer (lockdown)"
  ensure_group "$TOOLS_GROUP"
  RUNNER_UID=0 RUNNER_GID=0 WRITER_UID=0 WRITER_GID=0 TOOLS_GID=0
  if [ -z "$DRY" ]; then
    RUNNER_UID=$(lookup_id "$ROOT/etc/passwd" "$RUNNER_USER")
    RUNNER_GID=$(awk -F: -v n="$RUNNER_USER" '$1 == n { print $4 }' "$ROOT/etc/passwd")
    WRITER_UID=$(lookup_id "$ROOT/etc/passwd" "$WRITER_USER")
    WRITER_GID=$(awk -F: -v n="$WRITER_USER" '$1 == n { print $4 }' "$ROOT/etc/passwd")
    TOOLS_GID=$(lookup_id "$ROOT/etc/group" "$TOOLS_GROUP")
  fi
  [ "$RUNNER_UID" != "$AGENT_UID" ] || [ -n "$DRY" ] || die "--runner-user and --agent-user must differ"
  [ "$WRITER_UID" != "$AGENT_UID" ] || [ -n "$DRY" ] || die "--writer-user and --agent-user must differ"
  ensure_dir "$P/real" 0750
  run_ensure_owner_mode "$P/real" 0750 "0:$TOOLS_GID"
  for pair in $REAL; do
    tool=${pair%%=*}
    src=${pair#*=}
    case $tool in terraform|tofu|kubectl|helm) ;; *) die "--real $pair: the tool is one of terraform, tofu, kubectl, helm" ;; esac
    [ -f "$src" ] || die "--real $pair: no such file"
    ensure_file "$src" "$P/real/$tool" 0755 0:0
    record "$PREFIX/real/$tool"
    say "remove $src, or make it root:$TOOLS_GROUP 0750: the agent can still run it (hitl-gate doctor checks)"
  done
  ensure_dir "$ROOT/var" 0755
  ensure_dir "$ROOT/var/lib" 0755
  for home in "$RUNNER_HOME:$RUNNER_UID:$RUNNER_GID" "$WRITER_HOME:$WRITER_UID:$WRITER_GID"; do
    ensure_dir "$ROOT${home%%:*}" 0700
    run_ensure_owner_mode "$ROOT${home%%:*}" 0700 "${home#*:}"
    record "${home%%:*}"
  done
  if [ -n "$READ_KUBECONFIG" ]; then
    for f in "$READ_KUBECONFIG" "$WRITE_KUBECONFIG"; do [ -f "$f" ] || die "$f: no such file"; done
    ensure_file "$READ_KUBECONFIG" "$ROOT$RUNNER_HOME/read.kubeconfig" 0600 "$RUNNER_UID:$RUNNER_GID"
    ensure_file "$WRITE_KUBECONFIG" "$ROOT$WRITER_HOME/write.kubeconfig" 0600 "$WRITER_UID:$WRITER_GID"
  fi
  if [ -n "$WRITER_TOKEN" ]; then
    [ -f "$WRITER_TOKEN" ] || die "--writer-token-file $WRITER_TOKEN: no such file"
    ensure_file "$WRITER_TOKEN" "$ROOT$WRITER_HOME/writer.token" 0600 "$WRITER_UID:$WRITER_GID"
    say "the server's policy needs the writer, to record its outcomes as verified:"
    say "  [[serve.runner]] name = \"$WRITER_USER\", token_sha256 = \"$(tr -d '\n' <"$WRITER_TOKEN" | sha256sum | cut -d' ' -f1)\", agents = [\"$AGENT_USER\"]"
  else
    say "no --writer-token-file: the writer cannot report the outcomes of approved runs"
  fi
}

ensure_group() { # name; a system group, created in the target root's /etc/group
  if lookup_id "$ROOT/etc/group" "$1" >/dev/null; then return 0; fi
  act "create the system group $1"
  [ -n "$DRY" ] && return 0
  if [ -z "$ROOT" ] && command -v groupadd >/dev/null; then
    groupadd --system "$1"
  elif [ -z "$ROOT" ] && command -v addgroup >/dev/null; then
    addgroup -S "$1"
  else
    [ -f "$ROOT/etc/group" ] || die "$ROOT/etc/group is needed to add the group $1"
    id=$(awk -F: '{ used[$3] = 1 } END { for (i = 999; i >= 100; i--) if (!(i in used)) { print i; exit } }' \
      "$ROOT/etc/passwd" "$ROOT/etc/group")
    printf '%s:x:%s:\n' "$1" "$id" >>"$ROOT/etc/group"
  fi
}

# ensure_owner_mode, but not in a dry run (the runner user may not exist yet).
run_ensure_owner_mode() { [ -n "$DRY" ] || ensure_owner_mode "$@"; }

lockdown_policy_text() {
  printf '%s\n' \
    '' \
    '# Lockdown: the shim execs nothing; hitl-gate runner, as the runner user, runs the real' \
    '# tools with the read credential; approved runs go to the writer, which alone holds the' \
    '# write credential (docs/policy.md).' \
    '[lockdown]' \
    'runner_socket = "/run/hitl-gate/runner.sock"' \
    "runner_user = \"$RUNNER_USER\"" \
    "path = [\"$PREFIX/real\"]" \
    '' \
    '[lockdown.writer]' \
    "user = \"$WRITER_USER\"" \
    'socket = "/run/hitl-gate-writer/writer.sock"' \
    "token_file = \"$WRITER_HOME/writer.token\""
  if [ -n "$TF_PROVIDERS" ]; then printf '%s\n' "terraform_providers = \"$TF_PROVIDERS\""; fi
  if [ -n "$READ_KUBECONFIG" ]; then
    printf '%s\n' \
      '' \
      '[lockdown.credentials.default]' \
      "read = { KUBECONFIG = \"$RUNNER_HOME/read.kubeconfig\" }" \
      "write = { KUBECONFIG = \"$WRITER_HOME/write.kubeconfig\" }"
  fi
  printf '%s\n' \
    '' \
    '[[lockdown.agent]]' \
    "uid = $AGENT_UID" \
    "name = \"$AGENT_USER\""
}

unit_text_of() { # user home description command runtime-dir group-of-the-runtime-dir
  printf '%s\n' \
    "# hitl-gate $1 (lockdown mode), installed by install.sh." \
    '[Unit]' \
    "Description=$3" \
    'After=network-online.target' \
    '' \
    '[Service]' \
    "User=$1" \
    "Group=$1" \
    "SupplementaryGroups=$TOOLS_GROUP" \
    "Environment=HOME=$2" \
    "ExecStart=$4" \
    "RuntimeDirectory=$5"
  if [ -n "$6" ]; then
    # The socket's directory: its daemon's, entered by that group alone.
    printf '%s\n' 'RuntimeDirectoryMode=0750' "ExecStartPre=+/bin/chgrp $6 /run/$5"
  else
    printf '%s\n' 'RuntimeDirectoryMode=0755'
  fi
  printf '%s\n' \
    'UMask=0077' \
    'NoNewPrivileges=true' \
    'Restart=always' \
    'RestartSec=1' \
    '' \
    '[Install]' \
    'WantedBy=multi-user.target'
}

runner_unit_text() {
  unit_text_of "$RUNNER_USER" "$RUNNER_HOME" "hitl-gate runner: runs the real tools for the agents" \
    "$PREFIX/bin/hitl-gate runner" hitl-gate "$AGENT_GROUP"
}

writer_unit_text() {
  unit_text_of "$WRITER_USER" "$WRITER_HOME" "hitl-gate writer: runs approved runs with the write credential" \
    "$PREFIX/bin/hitl-gate runner --writer" hitl-gate-writer "$RUNNER_USER"
}

lockdown_unit_and_workspaces() {
  ensure_dir "$ROOT/etc/systemd" 0755
  ensure_dir "$ROOT/etc/systemd/system" 0755
  for unit in runner writer; do
    tmp=$(mktemp)
    "${unit}_unit_text" >"$tmp"
    ensure_file "$tmp" "$ROOT/etc/systemd/system/hitl-gate-$unit.service" 0644 0:0
    rm -f "$tmp"
    record "/etc/systemd/system/hitl-gate-$unit.service"
  done
  for w in $WORKSPACES; do
    dir=$ROOT$w
    [ -d "$dir" ] || die "--workspace $w: no such directory"
    command -v setfacl >/dev/null || die "--workspace needs setfacl (Debian: apt-get install acl)"
    for who in "$RUNNER_USER:$RUNNER_UID" "$WRITER_USER:$WRITER_UID"; do
      uid=${who#*:}
      if [ -n "$DRY" ] || ! getfacl -n -p "$dir" 2>/dev/null | grep -qx "default:user:$uid:rwx"; then
        act "grant ${who%%:*} read and write in $dir (ACL and default ACL)"
        run setfacl -R -m "u:$uid:rwX,d:u:$uid:rwX" "$dir"
      fi
    done
  done
  if [ -z "$ROOT" ] && [ -z "$DRY" ] && command -v systemctl >/dev/null; then
    say "start them: systemctl daemon-reload && systemctl enable --now hitl-gate-runner hitl-gate-writer"
  fi
}

# --- server
unit_text() {
  printf '%s\n' \
    '# hitl-gate approval server, installed by install.sh.' \
    '[Unit]' \
    'Description=hitl-gate approval server' \
    'After=network-online.target' \
    'Wants=network-online.target' \
    '' \
    '[Service]' \
    "User=$SERVICE_USER" \
    "Group=$SERVICE_USER" \
    'Environment=HITL_GATE_POLICY=/etc/hitl-gate/server.toml' \
    "ExecStart=$PREFIX/bin/hitl-gate serve --data-dir /var/lib/hitl-gate" \
    '# systemctl reload hitl-gate: the policy is loaded again (docs/policy.md, "Reloading").' \
    "ExecReload=/bin/kill -HUP \$MAINPID" \
    'StateDirectory=hitl-gate' \
    'StateDirectoryMode=0700' \
    'UMask=0077' \
    'ProtectSystem=strict' \
    'ProtectHome=true' \
    'PrivateTmp=true' \
    'PrivateDevices=true' \
    'NoNewPrivileges=true' \
    'ProtectKernelTunables=true' \
    'ProtectKernelModules=true' \
    'ProtectControlGroups=true' \
    'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' \
    'RestrictSUIDSGID=true' \
    'LockPersonality=true' \
    'MemoryDenyWriteExecute=true' \
    'Restart=on-failure' \
    'RestartSec=2' \
    '' \
    '[Install]' \
    'WantedBy=multi-user.target'
}

server_policy_text() {
  printf '%s\n' \
    '# The hitl-gate approval server'"'"'s policy, written by install.sh. Every setting:' \
    '# docs/policy.md. Add agents with: hitl-gate keys agent-token NAME' \
    'version = 1' \
    '' \
    '[serve]' \
    "listen = \"$LISTEN\"" \
    'data_dir = "/var/lib/hitl-gate"'
  if [ -n "$TLS_CERT" ]; then
    printf '%s\n' \
      'tls_cert = "/etc/hitl-gate/tls/cert.pem"' \
      'tls_key = "/etc/hitl-gate/tls/key.pem"'
  fi
  printf '%s\n' \
    '# public_url = "https://gate.example.com"' \
    '' \
    '# [serve.oidc]' \
    '# issuer = "https://login.example.com"' \
    '# client_id = "hitl-gate"' \
    '# client_secret_file = "/etc/hitl-gate/oidc-client.secret"' \
    '# approver_groups = ["platform-approvers"]'
}

ensure_user() { # name home description; a system user, created in the target root's /etc files
  if lookup_id "$ROOT/etc/passwd" "$1" >/dev/null; then return 0; fi
  act "create the system user $1"
  [ -n "$DRY" ] && return 0
  if [ -z "$ROOT" ] && command -v useradd >/dev/null; then
    useradd --system --user-group --no-create-home --home-dir "$2" --shell /usr/sbin/nologin "$1"
  elif [ -z "$ROOT" ] && command -v adduser >/dev/null; then
    addgroup -S "$1" && adduser -S -D -H -h "$2" -s /sbin/nologin -G "$1" "$1"
  else
    if [ ! -f "$ROOT/etc/passwd" ] || [ ! -f "$ROOT/etc/group" ]; then
      die "$ROOT/etc/passwd and $ROOT/etc/group are needed to add the user $1"
    fi
    # The highest system id (100-999) neither file uses.
    id=$(awk -F: '{ used[$3] = 1 } END { for (i = 999; i >= 100; i--) if (!(i in used)) { print i; exit } }' \
      "$ROOT/etc/passwd" "$ROOT/etc/group")
    [ -n "$id" ] || die "no free system id below 1000 in $ROOT/etc/passwd"
    printf '%s:x:%s:\n' "$1" "$id" >>"$ROOT/etc/group"
    printf '%s:x:%s:%s:%s:%s:/sbin/nologin\n' "$1" "$id" "$id" "$3" "$2" >>"$ROOT/etc/passwd"
  fi
}

server() {
  install_binary
  ensure_user "$SERVICE_USER" /var/lib/hitl-gate "hitl-gate approval server"
  uid=0
  gid=0
  if [ -z "$DRY" ]; then
    uid=$(lookup_id "$ROOT/etc/passwd" "$SERVICE_USER") || die "no user $SERVICE_USER"
    gid=$(awk -F: -v n="$SERVICE_USER" '$1 == n { print $4 }' "$ROOT/etc/passwd")
  fi

  ensure_dir "$ROOT/etc" 0755
  ensure_dir "$ETC" 0755
  if [ -n "$TLS_CERT" ]; then
    ensure_dir "$ETC/tls" 0755
    ensure_file "$TLS_CERT" "$ETC/tls/cert.pem" 0644 0:0
    ensure_file "$TLS_KEY" "$ETC/tls/key.pem" 0640 "0:$gid"
    record /etc/hitl-gate/tls/cert.pem
    record /etc/hitl-gate/tls/key.pem
  fi
  if [ -f "$ETC/server.toml" ]; then
    tmp=$(mktemp)
    server_policy_text >"$tmp"
    cmp -s "$tmp" "$ETC/server.toml" || say "$ETC/server.toml exists and is kept"
    rm -f "$tmp"
  else
    tmp=$(mktemp)
    server_policy_text >"$tmp"
    ensure_file "$tmp" "$ETC/server.toml" 0640 "0:$gid"
    rm -f "$tmp"
  fi
  record /etc/hitl-gate/server.toml

  ensure_dir "$ROOT/etc/systemd" 0755
  ensure_dir "$ROOT/etc/systemd/system" 0755
  tmp=$(mktemp)
  unit_text >"$tmp"
  ensure_file "$tmp" "$ROOT/etc/systemd/system/hitl-gate.service" 0644 0:0
  rm -f "$tmp"
  record /etc/systemd/system/hitl-gate.service

  data=$ROOT/var/lib/hitl-gate
  ensure_dir "$ROOT/var" 0755
  ensure_dir "$ROOT/var/lib" 0755
  ensure_dir "$data" 0700
  record /var/lib/hitl-gate
  record_dirs
  if [ -n "$DRY" ]; then
    say "would make the server's signing key in $data"
    return 0
  fi
  if [ ! -f "$data/signing.key" ]; then act "make the server's signing key in $data"; fi
  key=$("$P/bin/hitl-gate" keys show --data-dir "$data")
  ensure_owner_mode "$data" 0700 "$uid:$gid"
  ensure_owner_mode "$data/signing.key" 0600 "$uid:$gid"
  say "server public key (for each agent's --public-key): $key"
  say "make an agent's token: $PREFIX/bin/hitl-gate keys agent-token NAME, and add its lines to /etc/hitl-gate/server.toml"
  if [ -z "$ROOT" ] && command -v systemctl >/dev/null; then
    say "start it: systemctl daemon-reload && systemctl enable --now hitl-gate"
  fi
}

if [ -n "$UNINSTALL" ]; then
  uninstall
elif [ "$MODE" = agent ]; then
  binary
  agent
else
  binary
  server
fi

if [ "$CHANGED" -eq 0 ]; then
  say "nothing to change: already installed as asked"
elif [ -n "$DRY" ]; then
  say "dry run: $CHANGED changes would be made, none was"
else
  say "done: $CHANGED changes"
fi
