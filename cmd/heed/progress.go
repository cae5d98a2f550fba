package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// meter shows a run's progress on stderr, for heed demo and every heed sim
// model alike. It stays silent for the first second, so that quick runs
// print nothing; then it redraws one line ten times a second on a
// terminal, or prints a line every two seconds otherwise (a log keeps
// every line), and always the line that reaches the total.
type meter struct {
	w     io.Writer
	name  string
	quiet bool
	tty   bool
	now   func() time.Time // time.Now; tests set a fake clock
	start time.Time

	mu    sync.Mutex
	last  time.Time
	shown bool
}

func newMeter(w io.Writer, name string, quiet bool) *meter {
	return newMeterAt(w, name, quiet, isTerminal(w), time.Now)
}

func newMeterAt(w io.Writer, name string, quiet, tty bool, now func() time.Time) *meter {
	start := now()
	return &meter{w: w, name: name, quiet: quiet, tty: tty, now: now, start: start, last: start}
}

func (m *meter) update(done, total int) {
	if m.quiet {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	every := 2 * time.Second
	if m.tty {
		every = 100 * time.Millisecond
	}
	if now.Sub(m.start) < time.Second || now.Sub(m.last) < every && done < total {
		return
	}
	m.last, m.shown = now, true
	line := fmt.Sprintf("%s %s %d/%d %5.1f%% %6.1fs", m.name, bar(done, total, 30), done, total, 100*float64(done)/float64(max(total, 1)), now.Sub(m.start).Seconds())
	if m.tty {
		// Pad so that a shorter line fully covers the one it redraws.
		fmt.Fprintf(m.w, "\r%-79s", line)
	} else {
		fmt.Fprintln(m.w, line)
	}
}

// finish ends the redrawn line, if one was drawn.
func (m *meter) finish() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.shown && m.tty {
		fmt.Fprintln(m.w)
	}
}

func bar(done, total, width int) string {
	n := min(width*done/max(total, 1), width)
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
