# Shared by scripts/cpython.sh and scripts/forky.sh (source it; bash only):
# find the Debian mirror named by this machine's apt sources.
#
# list_sources prints "URI SUITE" for each enabled deb/deb-src entry, from
# one-line *.list files and deb822 *.sources files; find_mirror prints the
# first one that is the main Debian archive, or returns 1.

list_sources() {
    local f
    local -a list_files=() deb822_files=()
    [[ -f /etc/apt/sources.list ]] && list_files+=(/etc/apt/sources.list)
    for f in /etc/apt/sources.list.d/*.list; do
        [[ -f "$f" ]] && list_files+=("$f")
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] && deb822_files+=("$f")
    done

    # One-line format: `deb [options] URI SUITE COMPONENT...`
    if ((${#list_files[@]})); then
        awk '{
            sub(/#.*/, ""); gsub(/\[[^]]*\]/, "")
            if ($1 == "deb" || $1 == "deb-src") print $2, $3
        }' "${list_files[@]}"
    fi

    # deb822 format: paragraphs of `Field: value` (values may continue on
    # indented lines), separated by blank lines; `Enabled: no` disables one.
    if ((${#deb822_files[@]})); then
        awk '
        function flush(   nt, nu, ns, i, j, isdeb, T, U, S) {
            nt = split(types, T, /[ \t]+/); isdeb = 0
            for (i = 1; i <= nt; i++) if (T[i] == "deb" || T[i] == "deb-src") isdeb = 1
            gsub(/[ \t]/, "", enabled)
            if (isdeb && tolower(enabled) != "no") {
                nu = split(uris, U, /[ \t]+/); ns = split(suites, S, /[ \t]+/)
                for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++)
                    if (U[i] != "" && S[j] != "") print U[i], S[j]
            }
            types = uris = suites = enabled = key = ""
        }
        FNR == 1 { flush() }
        /^[ \t]*#/ { next }
        /^[ \t]*$/ { flush(); next }
        /^[ \t]/ {
            if (key == "types") types = types " " $0
            else if (key == "uris") uris = uris " " $0
            else if (key == "suites") suites = suites " " $0
            next
        }
        {
            c = index($0, ":"); if (c == 0) next
            key = tolower(substr($0, 1, c - 1)); val = substr($0, c + 1)
            if (key == "types") types = val
            else if (key == "uris") uris = val
            else if (key == "suites") suites = val
            else if (key == "enabled") enabled = val
        }
        END { flush() }' "${deb822_files[@]}"
    fi
}

# Keep entries that look like the main Debian archive: an http(s) URI whose
# suite is a Debian release name/alias, optionally with -updates/-backports
# (this excludes *-security and third-party repos with their own suite names).
find_mirror() {
    local uri suite base
    while read -r uri suite; do
        [[ "$uri" =~ ^https?:// ]] || continue
        [[ "$uri" == *security* ]] && continue
        base="${suite%-updates}"
        base="${base%-backports}"
        base="${base%-proposed-updates}"
        case "$base" in
            buster | bullseye | bookworm | trixie | forky | duke | sid | \
                oldoldstable | oldstable | stable | testing | unstable)
                printf '%s\n' "${uri%/}"
                return 0
                ;;
        esac
    done < <(list_sources)
    return 1
}
