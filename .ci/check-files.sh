#!/usr/bin/env bash
# Fails when a tracked file is larger than 1 MiB or is a compiled binary (ELF, Mach-O, PE, or any
# executable-bit file with NUL bytes). Build outputs belong in .gitignore, not in the repository.
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"
limit=$((1024 * 1024))
bad=0
while IFS= read -r -d '' entry; do
	mode=${entry%% *}
	path=${entry#*$'\t'}
	[ -f "$path" ] || continue # deleted in the work tree
	size=$(stat -c %s -- "$path")
	if [ "$size" -gt "$limit" ]; then
		echo "tracked file larger than 1 MiB: $path ($size bytes)"
		bad=1
	fi
	magic=$(head -c 4 -- "$path" | od -An -tx1 | tr -d ' \n')
	case "$magic" in
	7f454c46 | cffaedfe | cefaedfe | feedface | feedfacf | 4d5a*)
		echo "tracked compiled binary: $path"
		bad=1
		continue
		;;
	esac
	if [ "$mode" = 100755 ] && [ "$(head -c 8000 -- "$path" | tr -d '\000' | wc -c)" -ne "$(head -c 8000 -- "$path" | wc -c)" ]; then
		echo "tracked executable binary: $path"
		bad=1
	fi
done < <(git ls-files -s -z | sed -z 's/^\([0-9]*\) [0-9a-f]* [0-9]*\t/\1 \t/')
exit $bad
