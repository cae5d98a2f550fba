package table

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// CheckWidth fails t if any line of out is wider than MaxWidth.
func checkWidth(t *testing.T, out string) {
	t.Helper()
	for i, l := range strings.Split(out, "\n") {
		if n := utf8.RuneCountInString(l); n > MaxWidth {
			t.Errorf("line %d is %d columns wide:\n%s", i+1, n, l)
		}
	}
}

func TestNarrowTable(t *testing.T) {
	tb := Table{
		Title:  "a title",
		Head:   []string{"name", "n", "share"},
		Labels: 1,
		Rows:   [][]string{{"alpha", "1", "10%"}, {"b", "200", "n/a"}},
		Legend: [][2]string{{"n", "how many"}, {"share", "of the whole"}},
		Notes:  []string{"alpha wins."},
	}
	var b bytes.Buffer
	if err := tb.Write(&b); err != nil {
		t.Fatal(err)
	}
	want := `a title

name     n  share
alpha    1    10%
b      200    n/a

  n      how many
  share  of the whole

alpha wins.
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

// A table wider than MaxWidth splits into parts that each repeat the
// labels; long legend lines and notes wrap.
func TestWideTableSplits(t *testing.T) {
	tb := Table{Head: []string{"N"}, Labels: 1, Legend: [][2]string{{"x", strings.Repeat("word ", 60)}}, Notes: []string{strings.Repeat("note ", 50)}}
	for i := range 20 {
		tb.Head = append(tb.Head, fmt.Sprintf("column-number-%d", i))
	}
	for n := range 3 {
		row := []string{fmt.Sprint(n)}
		for i := range 20 {
			row = append(row, fmt.Sprint(n*i))
		}
		tb.Rows = append(tb.Rows, row)
	}
	var b bytes.Buffer
	if err := tb.Write(&b); err != nil {
		t.Fatal(err)
	}
	checkWidth(t, b.String())
	if got := strings.Count(b.String(), "\nN "); got < 3 {
		t.Errorf("want the table in several parts, each with the N column; got %d:\n%s", got, b.String())
	}
	for i := range 20 {
		if !strings.Contains(b.String(), fmt.Sprintf("column-number-%d ", i)) && !strings.Contains(b.String(), fmt.Sprintf("column-number-%d\n", i)) {
			t.Errorf("column %d missing", i)
		}
	}
}

func TestWrap(t *testing.T) {
	got := Wrap("one two three four", 9, "  ")
	want := []string{"one two", "  three", "  four"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
