#!/usr/bin/env bash
# Installs Snowgate's Debian packages on this machine and checks what a user gets: builds them
# with `scripts/package --profile debug` (reusing the debug binaries CI already built),
# installs both with `apt-get install ./….deb`, checks the commands, the man pages, the
# completions, both systemd units (`systemd-analyze verify`, and the server unit's exposure
# with `systemd-analyze security --offline`), the server's system user and the Depends, then
# purges both and checks that every file they installed and the user are gone.
#
# It changes the machine (as root; it refuses otherwise), so it leaves it as it found it on
# every exit: a trap purges the packages and whatever apt pulled in for them. A marker in
# /var/lib records an install in progress, so that a run killed outright is cleaned up by the
# next one. One run at a time per machine (flock).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
packages=(snowgate snowgate-server)
marker=/var/lib/snowgate-packages-test.installing
lock=/tmp/snowgate-packages-test.lock

say() { printf '\033[1mpackages:\033[0m %s\n' "$*" >&2; }
fail() { printf 'packages: FAILED: %s\n' "$*" >&2; exit 1; }
ok() { printf '  ok  %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || fail "run as root: the test installs packages with apt-get"

exec 9>"$lock"
if ! flock -n 9; then
  say "another run of this test holds $lock; waiting for it"
  flock -w 1800 9 || fail "another run of this test still holds $lock after 30 minutes"
fi

installed() { dpkg-query -W -f='${db:Status-Status}\n' "$1" 2>/dev/null | grep -qv '^not-installed$'; }

purge_ours() {
  local present=()
  for p in "${packages[@]}"; do installed "$p" && present+=("$p"); done
  if [ ${#present[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "${present[@]}" >/dev/null
  fi
}

# pulled_in BEFORE: the packages apt installed as dependencies (marked automatic) that were
# not installed when the list BEFORE was taken.
pulled_in() {
  dpkg-query -W -f='${db:Status-Status} ${Package}\n' | awk '$1 != "not-installed" {print $2}' | sort \
    | comm -13 "$1" - | comm -12 - <(apt-mark showauto | sort)
}
purge_pulled_in() {
  local extra
  extra=$(pulled_in "$1")
  if [ -n "$extra" ]; then
    say "purging what the install pulled in: $(echo $extra)"
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq $extra >/dev/null
  fi
}

# A run killed before its trap ran left its packages behind: clean them up first.
if [ -f "$marker" ]; then
  say "a previous run was interrupted; purging what it installed"
  purge_ours
  purge_pulled_in "$marker"
  rm -f "$marker"
fi
for p in "${packages[@]}"; do
  if installed "$p"; then
    fail "the package $p is installed on this machine; this test would remove it (apt-get purge $p first, if it is a leftover)"
  fi
done
if getent passwd snowgate >/dev/null || getent group snowgate >/dev/null; then
  fail "a user or group named snowgate exists; the server package's purge would delete it"
fi

work=$(mktemp -d)
before=$work/packages-before
dpkg-query -W -f='${db:Status-Status} ${Package}\n' | awk '$1 != "not-installed" {print $2}' | sort > "$before"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  purge_ours || { say "purging ${packages[*]} failed"; rc=1; }
  # Whatever apt installed for them (dependencies missing before) goes too.
  purge_pulled_in "$before" || { say "purging the dependencies apt pulled in failed"; rc=1; }
  rm -f "$marker"
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "building the packages (debug)"
start=$SECONDS
scripts/package --profile debug --out "$work/debs" > "$work/debs.list" || fail "scripts/package --profile debug failed"
mapfile -t debs < "$work/debs.list"
[ ${#debs[@]} = 2 ] || fail "scripts/package printed ${#debs[@]} package paths, expected 2"
desktop_deb=${debs[0]}
server_deb=${debs[1]}
version=$(dpkg-deb -f "$desktop_deb" Version)
say "built in $((SECONDS - start))s: $(basename "$desktop_deb") $(basename "$server_deb")"

say "installing with apt-get"
cp "$before" "$marker"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$desktop_deb" "$server_deb" >/dev/null
for p in "${packages[@]}"; do
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$p")" = installed ] || fail "$p is not installed after apt-get install"
done
ok "both packages installed"

# The commands.
[ "$(command -v snowgate)" = /usr/bin/snowgate ] || fail "snowgate is not /usr/bin/snowgate on PATH (found: $(command -v snowgate || echo nothing))"
got=$(snowgate --version)
[ "$got" = "snowgate $version" ] || fail "snowgate --version printed '$got', expected 'snowgate $version'"
ok "snowgate --version: $got"
[ -x /usr/bin/snowgate-app ] || fail "/usr/bin/snowgate-app is missing or not executable"
for bin in /usr/bin/snowgate /usr/bin/snowgate-app /usr/lib/snowgate-server/snowgate; do
  missing=$(ldd "$bin" | grep 'not found' || true)
  [ -z "$missing" ] || fail "$bin needs libraries no package provides: $missing"
done
grep -qx 'Exec=snowgate-app' /usr/share/applications/Snowgate.desktop || fail "no menu entry running snowgate-app in /usr/share/applications/Snowgate.desktop"
ok "snowgate-app present, with its menu entry; every library the binaries link is installed"
snowgate --help | grep -q 'connect-info' || fail "snowgate --help does not list connect-info"
out=$(snowgate-server --check --config "$work/missing.toml" 2>&1) && fail "snowgate-server --check passed without a config"
grep -q "missing.toml" <<<"$out" || fail "snowgate-server --check without a config did not name the file: $out"
ok "snowgate-server --check without a config fails and names the file"

# The man pages.
page=$(man -w snowgate) || fail "man -w snowgate found no page"
[ "$page" = /usr/share/man/man1/snowgate.1.gz ] || fail "man -w snowgate gave $page"
man -w snowgate-up >/dev/null || fail "man -w snowgate-up found no page"
zcat "$page" | grep -q 'connect\\-info' || fail "the man page does not describe connect-info"
zcat /usr/share/man/man1/snowgate-serve.1.gz | grep -q '\\-\\-check' || fail "snowgate-serve(1) does not describe --check"
ok "man pages: $(dpkg -L snowgate | grep -c '^/usr/share/man/man1/.*\.1\.gz$') in man1"

# The completions: each shell's file names the real subcommands.
bash_completion=/usr/share/bash-completion/completions/snowgate
[ -f "$bash_completion" ] || fail "no bash completion at $bash_completion"
bash -c "source $bash_completion && complete -p snowgate" | grep -q '_snowgate' || fail "the bash completion does not register for snowgate"
grep -q 'connect-info' "$bash_completion" || fail "the bash completion does not know connect-info"
head -n1 /usr/share/zsh/vendor-completions/_snowgate | grep -qx '#compdef snowgate' || fail "the zsh completion has no #compdef snowgate"
grep -q "complete -c snowgate .*-a \"connect-info\"" /usr/share/fish/vendor_completions.d/snowgate.fish || fail "the fish completion does not offer connect-info"
ok "completions for bash, zsh and fish"

# The units. Without systemd as PID 1 (a container), verify still parses each unit, checks its
# settings and that its ExecStart binary exists; what needs a running manager is not checked.
user_unit=/usr/lib/systemd/user/snowgate.service
server_unit=/lib/systemd/system/snowgate-server.service
[ -f "$user_unit" ] || fail "no user unit at $user_unit"
[ -f "$server_unit" ] || fail "no system unit at $server_unit"
# The user manager's verify wants a runtime directory even offline; it gets an empty one.
mkdir -m 0700 "$work/runtime"
verify() {
  local log=$work/verify-$(basename "$2").log
  if ! XDG_RUNTIME_DIR=$work/runtime systemd-analyze "$1" verify --man=no "$2" >"$log" 2>&1; then
    cat "$log" >&2
    fail "systemd-analyze $1 verify $2 failed"
  fi
  # Any complaint about our own unit counts; messages about other units on the machine don't.
  if grep -i "$(basename "$2")" "$log" >&2; then
    fail "systemd-analyze $1 verify $2 complained about it"
  fi
}
verify --user "$user_unit"
verify --system "$server_unit"
ok "systemd-analyze verify: both units"
grep -qx 'ExecStart=/usr/bin/snowgate up' "$user_unit" || fail "the user unit does not run 'snowgate up'"
exposure=$(systemd-analyze security --offline=true --no-pager "$server_unit" 2>/dev/null | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
[ -n "$exposure" ] || fail "systemd-analyze security --offline gave no exposure level for $server_unit"
awk -v e="$exposure" 'BEGIN { exit !(e <= 2.5) }' || fail "the server unit's exposure level is $exposure (above 2.5: hardening missing)"
ok "server unit exposure (systemd-analyze security --offline): $exposure"

# The server's system user.
entry=$(getent passwd snowgate) || fail "the server package did not create the user snowgate"
IFS=: read -r _ _ uid _ _ home shell <<<"$entry"
[ "$uid" -lt 1000 ] || fail "snowgate's uid $uid is not a system uid"
[ "$shell" = /usr/sbin/nologin ] || fail "snowgate's shell is $shell, expected /usr/sbin/nologin"
[ ! -e "$home" ] || fail "snowgate's home $home exists"
getent group snowgate >/dev/null || fail "no group snowgate"
grep -qx 'User=snowgate' "$server_unit" || fail "the server unit does not run as snowgate"
ok "system user snowgate (uid $uid, $shell, home $home)"

# The Depends.
depends=$(dpkg-query -W -f='${Depends}' snowgate)
for dep in libwebkit2gtk-4.1-0 libgtk-3-0 libayatana-appindicator3-1 libc6; do
  grep -q "\b$dep\b" <<<"$depends" || fail "the desktop package does not depend on $dep (Depends: $depends)"
done
grep -q '\badduser\b' <<<"$(dpkg-query -W -f='${Depends}' snowgate-server)" || fail "snowgate-server does not depend on adduser"
ok "Depends: $depends"

# Purge, and nothing is left.
dpkg -L "${packages[@]}" | sort -u > "$work/files"
say "purging with apt-get"
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "${packages[@]}" >/dev/null
for p in "${packages[@]}"; do
  ! installed "$p" || fail "$p is still known to dpkg after the purge"
done
left=()
while read -r f; do
  [ -d "$f" ] && continue
  [ -e "$f" ] || [ -L "$f" ] && left+=("$f")
done < "$work/files"
[ ${#left[@]} = 0 ] || fail "files left after the purge: ${left[*]}"
! getent passwd snowgate >/dev/null || fail "the user snowgate is left after the purge"
! getent group snowgate >/dev/null || fail "the group snowgate is left after the purge"
ok "purged: $(wc -l < "$work/files") paths checked, the user and group removed"
say "all checks passed"
