// Package choose picks a simulator's strategies by name from a flag.
package choose

import (
	"fmt"
	"slices"
	"strings"
)

// Pick returns the entries of all named in list, comma-separated, in the
// list's order; "" or "all" gives every entry. An unknown name is an error
// that lists the known ones; kind says what they are ("storm strategy").
func Pick[T any](all []T, name func(T) string, list, kind string) ([]T, error) {
	if list == "" || list == "all" {
		return all, nil
	}
	var out []T
	for n := range strings.SplitSeq(list, ",") {
		n = strings.TrimSpace(n)
		i := slices.IndexFunc(all, func(t T) bool { return name(t) == n })
		if i < 0 {
			names := make([]string, len(all))
			for j, t := range all {
				names[j] = name(t)
			}
			return nil, fmt.Errorf("unknown %s %q (want %s, or all)", kind, n, strings.Join(names, ", "))
		}
		out = append(out, all[i])
	}
	return out, nil
}
