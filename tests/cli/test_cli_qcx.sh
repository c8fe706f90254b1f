#!/usr/bin/env bash
# test_cli_qcx.sh — the qcx command line follows xz conventions (issue 8):
# stdin→stdout, refuses terminals, -k/-f/-d/-t/-l/-c/-o, exit codes 0/1/2,
# never deletes the source on error, temp file + rename (no leftovers).
set -u
QCX=${QCX_BIN:-build/qcx}
QCX=$(cd "$(dirname "$QCX")" && pwd)/$(basename "$QCX")
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
fail=0
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
bad() { n=$((n + 1)); echo "not ok $n - $1"; fail=1; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
leftovers() { ls -a | grep -q '\.qcx-' && return 0; return 1; }

printf 'The quick brown fox jumps over the lazy dog.\nAnd THE DOG sleeps.\r\n' > a.txt
for i in $(seq 1 200); do echo "line $i of the Book: And God said, Let there be light."; done > b.txt
cp a.txt a.orig; cp b.txt b.orig

# stdin -> stdout
"$QCX" < a.txt > s.qcr; rc=$?
check "stdin to stdout exits 0" "[ $rc -eq 0 ]"
"$QCX" -d < s.qcr > s.out
check "stdin round trip" "cmp -s s.out a.txt"
"$QCX" -c - < b.txt | "$QCX" -dc - > s2.out
check "'-' means stdin" "cmp -s s2.out b.txt"

# files: xz keeps nothing by default; -k keeps
"$QCX" a.txt; rc=$?
check "compress file exits 0" "[ $rc -eq 0 ]"
check "a.txt.qcr created" "[ -f a.txt.qcr ]"
check "source removed after success (xz default)" "[ ! -e a.txt ]"
"$QCX" -d a.txt.qcr
check "decompress restores a.txt" "cmp -s a.txt a.orig"
check "compressed file removed after decompression" "[ ! -e a.txt.qcr ]"
"$QCX" -k b.txt
check "-k keeps the source" "[ -f b.txt ] && [ -f b.txt.qcr ]"

# refuse to overwrite without -f
cp b.txt.qcr keep.qcr
"$QCX" -k b.txt 2> err.txt; rc=$?
check "existing output refused, exit 1" "[ $rc -eq 1 ]"
check "message says File exists" "grep -q 'File exists' err.txt"
check "existing output untouched" "cmp -s b.txt.qcr keep.qcr"
"$QCX" -kf -9 b.txt; rc=$?
check "-f overwrites" "[ $rc -eq 0 ] && ! cmp -s b.txt.qcr keep.qcr"
check "no temp files left" "! leftovers"

# -c keeps input and writes to stdout
"$QCX" -c b.txt > c.qcr
check "-c keeps input" "[ -f b.txt ]"
check "-c output decodes" "\"$QCX\" -dc c.qcr | cmp -s - b.orig"
"$QCX" -o named.qcr b.txt
check "-o FILE writes FILE and keeps input" "[ -f named.qcr ] && [ -f b.txt ]"

# -t and -l
"$QCX" -t c.qcr; rc=$?
check "-t on a good file exits 0" "[ $rc -eq 0 ]"
"$QCX" -l c.qcr > list.txt; rc=$?
check "-l lists ratio and size" "[ $rc -eq 0 ] && grep -q ratio list.txt && grep -q \"$(stat -c %s b.orig)\" list.txt"

# corruption: exit 1, source kept, no output, no temp file
cp c.qcr bad.qcr
printf '\x55' | dd of=bad.qcr bs=1 seek=40 conv=notrunc 2>/dev/null
"$QCX" -t bad.qcr 2>/dev/null; rc=$?
check "-t on a corrupt file exits 1" "[ $rc -eq 1 ]"
"$QCX" -d bad.qcr 2> err.txt; rc=$?
check "corrupt decompress exits 1" "[ $rc -eq 1 ]"
check "error message names the file" "grep -q 'bad.qcr' err.txt"
check "source kept on error" "[ -f bad.qcr ]"
check "no partial output on error" "[ ! -e bad ]"
check "no temp files after error" "! leftovers"
head -c 20 c.qcr > trunc.qcr
"$QCX" -d trunc.qcr 2>/dev/null; rc=$?
check "truncated file exits 1 and is kept" "[ $rc -eq 1 ] && [ -f trunc.qcr ] && [ ! -e trunc ]"

# several files: continue after an error, exit 1 at the end
cp c.qcr g1.qcr; cp c.qcr g2.qcr
"$QCX" -dk g1.qcr bad.qcr g2.qcr 2>/dev/null; rc=$?
check "multi-file run exits 1 after an error" "[ $rc -eq 1 ]"
check "files after the error still processed" "cmp -s g1 b.orig && cmp -s g2 b.orig"

# warnings: exit 2
"$QCX" -k c.qcr 2>/dev/null; rc=$?
check "compressing a .qcr file is skipped with exit 2" "[ $rc -eq 2 ]"
"$QCX" -d b.txt 2>/dev/null; rc=$?
check "decompressing without .qcr suffix is skipped with exit 2" "[ $rc -eq 2 ] && [ -f b.txt ]"
mkdir d
"$QCX" d 2>/dev/null; rc=$?
check "a directory is skipped with exit 2" "[ $rc -eq 2 ]"

# usage errors
"$QCX" --no-such-option 2>/dev/null; rc=$?
check "unknown option exits 1" "[ $rc -eq 1 ]"
"$QCX" --tiling=golden b.txt 2>/dev/null; rc=$?
check "unknown tiling exits 1" "[ $rc -eq 1 ]"
"$QCX" missing.txt 2>/dev/null; rc=$?
check "missing file exits 1" "[ $rc -eq 1 ]"

# levels, tilings, threads all decode
allgood=1
for opt in -1 -5 -9 --tiling=fib --tiling=p5 --tiling=none --tiling=allpos "-T 2" -T3; do
    # shellcheck disable=SC2086
    "$QCX" -c $opt b.orig | "$QCX" -dc | cmp -s - b.orig || allgood=0
done
check "levels, tilings and -T round trip" "[ $allgood -eq 1 ]"

# -v and --stats
"$QCX" -cv b.orig 2> v.txt > /dev/null
check "-v prints ratio and speed" "grep -q '%' v.txt && grep -q 'MB/s' v.txt"
"$QCX" -c --stats b.orig 2> st.txt > st.qcr
check "--stats prints the hierarchy table on stderr" "grep -q lookups st.txt && grep -q '^1 ' st.txt"
check "--stats keeps stdout pure compressed data" "\"$QCX\" -dc st.qcr | cmp -s - b.orig"

# terminals: refuse compressed data to/from a tty (needs script(1))
if command -v script > /dev/null 2>&1; then
    script -qec "\"$QCX\" -c b.orig" /dev/null > tty.txt 2>&1; rc=$?
    check "refuses to write compressed data to a terminal" "[ $rc -eq 1 ] && grep -q terminal tty.txt"
else
    echo "ok - # SKIP script(1) not installed: terminal check"
fi

# empty input
: > empty
"$QCX" -k empty
check "empty file gives 25 bytes and round trips" "[ \$(stat -c %s empty.qcr) -eq 25 ] && \"$QCX\" -dc empty.qcr | cmp -s - empty"

echo "1..$n"
[ $fail -eq 0 ] && echo "test_cli_qcx: all passed" || echo "test_cli_qcx: FAILED"
exit $fail
