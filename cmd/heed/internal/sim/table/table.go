// Package table prints the fixed-width tables of heed demo and heed sim,
// each with a legend and a conclusion under it, in at most [MaxWidth]
// columns: a table too wide for that is split into several, each
// repeating the row labels.
package table

import (
	"bufio"
	"io"
	"strings"
	"unicode/utf8"
)

// MaxWidth is the widest line a table prints: it fits a terminal of 100
// columns and a code block on a web page without scrolling.
const MaxWidth = 100

// Table is a titled grid of cells.
type Table struct {
	Title string // wrapped to MaxWidth; "\n" breaks a line
	// Head names the columns; the first Labels columns are row labels,
	// left-aligned and repeated in every part of a split table. The other
	// columns are right-aligned.
	Head   []string
	Labels int
	Rows   [][]string
	// Legend explains the columns: a term and what it means, one entry
	// each.
	Legend [][2]string
	// Notes are paragraphs printed after the legend, such as a
	// conclusion drawn from the numbers.
	Notes []string
}

const gap = 2 // spaces between columns

// Write prints t. Every line is at most MaxWidth columns unless a single
// cell or word is wider.
func (t Table) Write(w io.Writer) error {
	bw := bufio.NewWriter(w)
	if t.Title != "" {
		for _, para := range strings.Split(t.Title, "\n") {
			for _, l := range Wrap(para, MaxWidth, "") {
				bw.WriteString(l + "\n")
			}
			if para == "" {
				bw.WriteByte('\n')
			}
		}
		bw.WriteByte('\n')
	}
	widths := make([]int, len(t.Head))
	for i, h := range t.Head {
		widths[i] = utf8.RuneCountInString(h)
	}
	for _, r := range t.Rows {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for pi, part := range t.parts(widths) {
		if pi > 0 {
			bw.WriteByte('\n')
		}
		line := func(cells []string) {
			var b strings.Builder
			for j, i := range part {
				if j > 0 {
					b.WriteString(strings.Repeat(" ", gap))
				}
				pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(cells[i]))
				if i < t.Labels {
					b.WriteString(cells[i] + pad)
				} else {
					b.WriteString(pad + cells[i])
				}
			}
			bw.WriteString(strings.TrimRight(b.String(), " ") + "\n")
		}
		line(t.Head)
		for _, r := range t.Rows {
			line(r)
		}
	}
	if len(t.Legend) > 0 {
		bw.WriteByte('\n')
		termW := 0
		for _, e := range t.Legend {
			termW = max(termW, utf8.RuneCountInString(e[0]))
		}
		indent := strings.Repeat(" ", 2+termW+2)
		for _, e := range t.Legend {
			first := "  " + e[0] + strings.Repeat(" ", termW-utf8.RuneCountInString(e[0])+2)
			for i, l := range Wrap(e[1], MaxWidth-len(indent), "") {
				if i == 0 {
					bw.WriteString(first + l + "\n")
				} else {
					bw.WriteString(indent + l + "\n")
				}
			}
		}
	}
	for _, n := range t.Notes {
		bw.WriteByte('\n')
		for _, l := range Wrap(n, MaxWidth, "") {
			bw.WriteString(l + "\n")
		}
	}
	return bw.Flush()
}

// parts groups the column indexes into tables that fit MaxWidth, each
// starting with the label columns.
// WriteAll writes tables one after the other, a blank line between them.
func WriteAll(w io.Writer, tables []Table) error {
	for i, t := range tables {
		if i > 0 {
			if _, err := io.WriteString(w, "\n"); err != nil {
				return err
			}
		}
		if err := t.Write(w); err != nil {
			return err
		}
	}
	return nil
}

func (t Table) parts(widths []int) [][]int {
	var labels []int
	lw := 0
	for i := range min(t.Labels, len(widths)) {
		labels = append(labels, i)
		lw += widths[i] + gap
	}
	var out [][]int
	cur, cw := append([]int(nil), labels...), lw
	for i := t.Labels; i < len(widths); i++ {
		if len(cur) > len(labels) && cw+widths[i] > MaxWidth {
			out = append(out, cur)
			cur, cw = append([]int(nil), labels...), lw
		}
		cur = append(cur, i)
		cw += widths[i] + gap
	}
	return append(out, cur)
}

// Wrap breaks text into lines of at most width columns at spaces, the
// lines after the first starting with indent. A word longer than width
// gets a line of its own.
func Wrap(text string, width int, indent string) []string {
	var lines []string
	var cur strings.Builder
	for _, word := range strings.Fields(text) {
		n := utf8.RuneCountInString(cur.String())
		if n > 0 && n+1+utf8.RuneCountInString(word) > width {
			lines = append(lines, cur.String())
			cur.Reset()
			cur.WriteString(indent)
		}
		if n := cur.Len(); n > 0 && cur.String() != indent {
			cur.WriteByte(' ')
		}
		cur.WriteString(word)
	}
	if cur.Len() > 0 {
		lines = append(lines, cur.String())
	}
	return lines
}
