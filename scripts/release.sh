#!/usr/bin/env bash
# Builds the release archives of the shepherd binary (Native AOT, one file, no .NET needed where it
# runs) and their checksums into an output folder: shepherd-VERSION-RID.tar.gz (.zip for Windows)
# and SHA256SUMS. Native AOT compiles for the machine it runs on: a platform whose toolchain this
# machine lacks is skipped, said so, and fails the script only when it was asked for by name.
set -euo pipefail

usage() {
    cat >&2 <<'EOF'
usage: scripts/release.sh [OUT] [RID...]   build the archives into OUT (default artifacts/release) for
                                           each RID (default: linux-x64, linux-arm64, osx-arm64, win-x64,
                                           those this machine can build)

Linux needs clang and zlib1g-dev (apt install clang zlib1g-dev), and libsqlite3-dev to link SQLite in
(without it libe_sqlite3.so is shipped beside the binary); linux-arm64 from x64 needs an arm64 sysroot
and gcc-aarch64-linux-gnu. macOS archives are built on macOS (Xcode), Windows ones on Windows (Visual
Studio's C++ tools). The version is the project's (Directory.Build.props).
EOF
    exit 2
}

die() {
    echo "release: $*" >&2
    exit 1
}

[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && usage
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-artifacts/release}")
shift || true
if [[ $# -gt 0 ]]; then
    rids=("$@")
    asked=1
else
    rids=(linux-x64 linux-arm64 osx-arm64 win-x64)
    asked=0
fi
version=$(sed -n 's:.*<VersionPrefix>\(.*\)</VersionPrefix>.*:\1:p' Directory.Build.props)
[[ -n "$version" ]] || die "no VersionPrefix in Directory.Build.props"
host="$(uname -s)-$(uname -m)"

# Whether this machine can build RID natively (a cross build needs a toolchain Native AOT does not bring).
can_build() {
    case "$1:$host" in
        linux-x64:Linux-x86_64 | linux-arm64:Linux-aarch64) command -v clang >/dev/null ;;
        linux-arm64:Linux-x86_64) command -v aarch64-linux-gnu-gcc >/dev/null && command -v clang >/dev/null ;;
        osx-arm64:Darwin-arm64 | osx-x64:Darwin-x86_64) command -v xcrun >/dev/null ;;
        win-x64:MINGW* | win-x64:MSYS* | win-x64:CYGWIN*) true ;;
        *) false ;;
    esac
}

mkdir -p "$out"
built=()
for rid in "${rids[@]}"; do
    if ! can_build "$rid"; then
        message="$rid: this machine ($host) lacks the toolchain to build it; see scripts/release.sh --help"
        [[ $asked -eq 1 ]] && die "$message"
        echo "release: skipped $message" >&2
        continue
    fi

    echo "release: building $rid" >&2
    publish="$out/.publish-$rid"
    rm -rf "$publish"
    dotnet publish src/Shepherd.Cli -r "$rid" -c Release -o "$publish" >&2
    name="shepherd-$version-$rid"
    stage="$out/.stage/$name"
    rm -rf "$stage"
    mkdir -p "$stage"
    # The binary (and, where SQLite could not be linked in, its library), the licence and the readme.
    find "$publish" -maxdepth 1 -type f \( -name 'shepherd' -o -name 'shepherd.exe' -o -name '*.so' -o -name '*.dylib' -o -name '*.dll' \) -exec cp {} "$stage/" \;
    cp LICENSE README.md "$stage/"
    if [[ "$rid" == win-* ]]; then
        (cd "$out/.stage" && rm -f "../$name.zip" && zip -qr "../$name.zip" "$name")
        built+=("$name.zip")
    else
        tar -C "$out/.stage" -czf "$out/$name.tar.gz" "$name"
        built+=("$name.tar.gz")
    fi
    rm -rf "$publish" "$stage"
done

rm -rf "$out/.stage"
[[ ${#built[@]} -gt 0 ]] || die "nothing was built on this machine ($host)"
(cd "$out" && sha256sum "${built[@]}" > SHA256SUMS)
echo "release: $out" >&2
for archive in "${built[@]}"; do
    echo "  $archive"
done
echo "  SHA256SUMS"
