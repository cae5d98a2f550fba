package choose

import (
	"strings"
	"testing"
)

func TestPick(t *testing.T) {
	all := []string{"a", "b", "c"}
	id := func(s string) string { return s }
	for list, want := range map[string]string{"": "a b c", "all": "a b c", "c, a": "c a", "b": "b"} {
		got, err := Pick(all, id, list, "letter")
		if err != nil || strings.Join(got, " ") != want {
			t.Errorf("Pick(%q) = %v, %v; want %s", list, got, err, want)
		}
	}
	if _, err := Pick(all, id, "a,z", "letter"); err == nil || err.Error() != `unknown letter "z" (want a, b, c, or all)` {
		t.Errorf("unknown name: %v", err)
	}
}
