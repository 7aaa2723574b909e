#!/usr/bin/env bash
# `make toolchain`: the pinned Pulumi CLI, its Python language host and the resource plugins the program uses
# (kubernetes, random, tls), in a versioned folder outside the clone.
# Sources, in order: binaries already there at the pinned versions (this folder, or a pulumi on PATH with its
# plugins in ~/.pulumi); the official installers where the internet is reachable (TOOLCHAIN_INSTALLERS=auto, the
# default, tries them; 0 skips them, 1 insists); otherwise builds from the Go modules of the same versions
# through the Go module proxy (tools/toolchain/*: wrapper modules and glue of ours, no upstream code).
# The plugins are installed into the folder's own PULUMI_HOME, so the CLI finds them with plugin download off.
# Its last line of output is the folder holding the binaries; everything else goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
here=$PWD

# shellcheck source=tools/toolchain/versions
. tools/toolchain/versions
root=${BEE_TOOLCHAIN_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/bee-travels-toolchain}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'toolchain: %s\n' "$*" >&2; exit 1; }
command -v go >/dev/null || die "Go is needed to build the toolchain (apt-get install golang, or go.dev/dl); Go 1.26 is what this was tested with"

# The folder's name changes whenever a pin, a wrapper module or the Go version changes, so a stale build is never reused.
key=$( { cat tools/toolchain/versions scripts/toolchain.sh; find tools/toolchain -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' -o -name '*.sh' \) -print0 | sort -z | xargs -0 cat; go version; } | sha256sum | cut -c1-12)
dir="$root/pulumi-$PULUMI_VERSION-$key"
bin="$dir/bin"
export PULUMI_HOME="$dir/home" PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
plugins=("kubernetes:$KUBERNETES_PROVIDER_VERSION" "random:$RANDOM_PROVIDER_VERSION" "tls:$TLS_PROVIDER_VERSION")

reports() {  # reports BINARY VERSION: the binary exists and says it is that version
  [ -x "$1" ] && [ "$("$1" --version 2>/dev/null || "$1" version 2>/dev/null)" = "$2" ]
}

timed() {  # timed LABEL COMMAND...: runs it and says how long it took
  local label=$1 start=$SECONDS; shift
  "$@"
  say "$label: $((SECONDS - start)) s"
}

wrapper_build() {  # wrapper_build MODULE_DIR OUTPUT PACKAGE LDFLAGS
  (cd "$1" && go build -trimpath -tags osusergo,grpcnotrace -ldflags "-s -w $4" -o "$2" "$3")
}

build_cli() {
  local version_flag="-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" sdk
  timed "pulumi CLI built" wrapper_build tools/toolchain/pulumi "$bin/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi "$version_flag"
  timed "Python language host built" wrapper_build tools/toolchain/pulumi "$bin/pulumi-language-python" ./languagehost "$version_flag"
  # The executor the host runs is a Python script that ships inside the SDK module.
  sdk=$(cd tools/toolchain/pulumi && go mod download github.com/pulumi/pulumi/sdk/v3 && go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)
  install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" "$bin/"
}

# The Terraform-bridged providers, by the upstream Terraform provider module each one bridges.
declare -A bridged=([random]=github.com/terraform-providers/terraform-provider-random [tls]=github.com/hashicorp/terraform-provider-tls)

build_plugin() {  # build_plugin NAME VERSION
  if [ -n "${bridged[$1]:-}" ]; then
    timed "$1 provider $2 built" tools/toolchain/bridged-provider.sh "$1" "${bridged[$1]}" "$bin" "$2"
  else
    timed "$1 provider $2 built" "tools/toolchain/pulumi-resource-$1/build.sh" "$bin" "$2"
  fi
}

from_installers() {
  say "installing Pulumi $PULUMI_VERSION and its plugins with the official installers"
  local installer plugin
  installer=$(curl -fsSL --connect-timeout 10 --max-time 60 https://get.pulumi.com) || return 1
  sh -c "$installer" -s --version "$PULUMI_VERSION" --install-root "$dir" --no-edit-path >&2 || return 1
  for plugin in "${plugins[@]}"; do
    "$bin/pulumi" plugin install resource "${plugin%%:*}" "${plugin#*:}" --non-interactive >&2 || return 1
  done
}

adopt_present() {  # a pulumi on PATH at the pinned version, with its language host, and plugins already installed
  local found home=${HOME}/.pulumi plugin name version
  found=$(command -v pulumi || true)
  [ -n "$found" ] && reports "$found" "v$PULUMI_VERSION" && [ -x "$(dirname "$found")/pulumi-language-python" ] || return 1
  for plugin in "${plugins[@]}"; do
    name=${plugin%%:*} version=${plugin#*:}
    [ -x "$home/plugins/resource-$name-v$version/pulumi-resource-$name" ] || return 1
  done
  say "using the Pulumi $PULUMI_VERSION already installed at $(dirname "$found")"
  mkdir -p "$bin"
  cp "$(dirname "$found")"/pulumi{,-language-python,-language-python-exec} "$bin/"
  for plugin in "${plugins[@]}"; do
    name=${plugin%%:*} version=${plugin#*:}
    cp "$home/plugins/resource-$name-v$version/pulumi-resource-$name" "$bin/"
    "$bin/pulumi" plugin install resource "$name" "$version" --file "$bin/pulumi-resource-$name" --non-interactive >&2
  done
}

from_modules() {
  say "building the toolchain from Go modules into $dir (cold: about 40 minutes on 2 cores; warm: seconds)"
  mkdir -p "$bin"
  reports "$bin/pulumi" "v$PULUMI_VERSION" && [ -x "$bin/pulumi-language-python" ] || build_cli
  local plugin name version
  for plugin in "${plugins[@]}"; do
    name=${plugin%%:*} version=${plugin#*:}
    # The folder is keyed on the pins, so a plugin binary in it is the pinned build.
    [ -x "$bin/pulumi-resource-$name" ] || build_plugin "$name" "$version"
    "$bin/pulumi" plugin install resource "$name" "$version" --file "$bin/pulumi-resource-$name" --non-interactive >&2
  done
}

if [ -f "$dir/.complete" ]; then
  say "toolchain present: $dir"
else
  case "${TOOLCHAIN_INSTALLERS:-auto}" in
    1) adopt_present || from_installers || die "the official installers failed" ;;
    0) adopt_present || from_modules ;;
    *) adopt_present || from_installers || { say "official installers unreachable: building from Go modules"; from_modules; } ;;
  esac
  # Read the listing whole first: `grep -q` closing the pipe early would fail the CLI under pipefail.
  installed=$("$bin/pulumi" plugin ls)
  for plugin in "${plugins[@]}"; do
    grep -qE "^${plugin%%:*}\s+resource\s+${plugin#*:}\s" <<<"$installed" \
      || die "plugin ${plugin%%:*} ${plugin#*:} is not installed in $PULUMI_HOME"
  done
  touch "$dir/.complete"
fi
reports "$bin/pulumi" "v$PULUMI_VERSION" || die "$bin/pulumi does not report v$PULUMI_VERSION"
cd "$here"
echo "$bin"
