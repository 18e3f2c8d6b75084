#!/usr/bin/env bash
# Usage: scripts/fuzz.sh DURATION [PARALLEL]
#
# Fuzzes every fuzz target of the module, one after another, each for
# DURATION (any -fuzztime value: 30s, 10m, 1h, or 5000x for a count) with
# PARALLEL workers (default 1). Targets are found, not listed: every
# `func FuzzXxx(` in a *_test.go file of a package in this module (as
# `go list ./...` sees it) is run, so a new target is picked up by itself.
# Each target runs as
#   go test -run '^$' -fuzz "^FuzzXxx$" -fuzztime DURATION -parallel PARALLEL ./pkg
# with its output shown and kept in a log under a temp dir; at the end one
# summary line per target gives the last "elapsed/execs/new interesting"
# figure Go printed. The exit status is non-zero if any target failed, and
# the failing targets are named (Go writes the crasher to
# <pkg>/testdata/fuzz/<Target>/, where it then runs as a regression test).
#
# Corpus: Go keeps what the fuzzer finds in $(go env GOCACHE)/fuzz/<import
# path>/<Target>/, outside the repository. A small committed seed corpus
# lives in <pkg>/testdata/fuzz/<Target>/ (Go's "go test fuzz v1" files);
# plain `go test` runs those entries (and the f.Add seeds) as subtests,
# e.g. FuzzDecoder/<hash>, without fuzzing.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ] || [ -z "$1" ]; then
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
  exit 2
fi
duration=$1
parallel=${2:-1}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
gocache=$(go env GOCACHE)

# "pkgdir name" pairs, e.g. "./internal/xstream FuzzDecoder": the test files
# of the module's packages (build constraints applied by go list), searched
# for `func Fuzz...(`.
module=$(go list -m)
targets=()
while IFS=$'\t' read -r importpath dir testfiles; do
  [ -n "${testfiles// /}" ] || continue
  if [ "$importpath" = "$module" ]; then pkgdir=.; else pkgdir=./${importpath#"$module"/}; fi
  for f in $testfiles; do
    while read -r name; do
      targets+=("$pkgdir $name")
    done < <(grep -E '^func Fuzz[A-Za-z0-9_]*\(' "$dir/$f" | sed -E 's/^func (Fuzz[A-Za-z0-9_]*)\(.*/\1/')
  done
done < <(go list -f '{{.ImportPath}}{{"\t"}}{{.Dir}}{{"\t"}}{{join .TestGoFiles " "}} {{join .XTestGoFiles " "}}' ./...)
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz.sh: no fuzz targets found under $root" >&2
  exit 1
fi
mapfile -t targets < <(printf '%s\n' "${targets[@]}" | sort -u)

logdir=$(mktemp -d "${TMPDIR:-/tmp}/fuzz.XXXXXX")
echo "fuzz.sh: ${#targets[@]} targets, ${duration} each, -parallel ${parallel}; logs in ${logdir}"

summary=()
failed=()
for t in "${targets[@]}"; do
  pkgdir=${t% *}
  name=${t#* }
  log="${logdir}/$(echo "${pkgdir#./}" | tr '/.' '__')_${name}.log"
  echo
  echo "=== ${name} (${pkgdir}) $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  status=PASS
  if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$duration" -parallel "$parallel" "$pkgdir" 2>&1 | tee "$log"; then
    status=FAIL
  fi
  last=$(grep -E 'execs: [0-9]+' "$log" | tail -n 1 | sed -E 's/^.*fuzz: //') || true
  if [ -z "$last" ]; then
    # A count (e.g. 20x) smaller than the corpus is used up while Go gathers
    # baseline coverage, so no "execs:" line is printed; that still fuzzed.
    last=$(grep -E '^fuzz: elapsed' "$log" | tail -n 1 | sed -E 's/^.*fuzz: //') || true
  fi
  if [ -z "$last" ]; then
    # go test passed but never fuzzed (no such target, excluded by build tags...).
    [ "$status" = PASS ] && status=FAIL
    last="no fuzzing reported"
  fi
  if [ "$status" = FAIL ]; then
    crasher=$(grep -oE 'testdata/fuzz/[^ ]+' "$log" | tail -n 1) || true
    failed+=("${name} (${pkgdir})${crasher:+: crasher ${pkgdir}/${crasher}}")
  fi
  summary+=("$(printf '%-4s %-20s %-28s %s' "$status" "$name" "$pkgdir" "$last")")
done

echo
echo "=== summary (-fuzztime ${duration}, -parallel ${parallel}; logs in ${logdir}; corpus cache ${gocache}/fuzz/)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo
  echo "fuzz.sh: ${#failed[@]} target(s) failed:" >&2
  printf '  %s\n' "${failed[@]}" >&2
  exit 1
fi
